from freeze_omni.cli import main

raise SystemExit(main())
