from dwtrio.cli import main

raise SystemExit(main())
