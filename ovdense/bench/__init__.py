"""Benchmarks and the roofline model (an application of the library; the core never imports it)."""
