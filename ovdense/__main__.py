"""``python -m ovdense ...`` is the ``ovdense`` command."""
import sys

from .cli.main import main

sys.exit(main())
