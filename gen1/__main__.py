import sys

from gen1.cli import main

sys.exit(main())
