import sys

from suqiu.cli.main import main

sys.exit(main())
