import sys

from remitflow.cli import main

sys.exit(main())
