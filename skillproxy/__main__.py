from skillproxy.cli import main

raise SystemExit(main())
