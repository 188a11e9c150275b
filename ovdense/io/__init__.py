from .images import IMAGE_EXTENSIONS, ImageLoadError, LoadedImage, image_path, load_image
from .writers import atomic_path, overlay, palette, write_json, write_label_png, write_overlay_jpg

__all__ = ["IMAGE_EXTENSIONS", "ImageLoadError", "LoadedImage", "atomic_path", "image_path", "load_image", "overlay",
           "palette", "write_json", "write_label_png", "write_overlay_jpg"]
