from .embedding import TextEmbedder, default_cache_dir, load_extra_prompts
from .templates import resolve_templates
from .vocabulary import Vocabulary, build_vocabulary, parse_name_lines, read_name_file

__all__ = ["TextEmbedder", "Vocabulary", "build_vocabulary", "default_cache_dir", "load_extra_prompts",
           "parse_name_lines", "read_name_file", "resolve_templates"]
