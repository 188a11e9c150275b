"""Three stages written as a contributor would from README's "Extending" section: each is one
file plus its registration, reading what it needs from the image's context. Importing this
package registers them (tests only)."""
from . import background_map_rule, dino_affinity_refiner, grid_proposals  # noqa: F401
