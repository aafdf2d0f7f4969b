"""`python -m completer` runs the same command line as the `completer` script."""
from completer.cli import main

raise SystemExit(main())
