from sipwatch.cli import main

raise SystemExit(main())
