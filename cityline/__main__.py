from cityline.cli import main

raise SystemExit(main())
