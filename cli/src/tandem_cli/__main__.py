from tandem_cli.main import main

raise SystemExit(main())
