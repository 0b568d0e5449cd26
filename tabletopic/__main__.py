from tabletopic.cli import main

raise SystemExit(main())
