from orbiter.cli import main

raise SystemExit(main())
