"""`python -m diffusers_sspir.cli`: the `sspir` command, for launchers that start a module
(`torchrun -m diffusers_sspir.cli`, `accelerate launch -m diffusers_sspir.cli`)."""

from . import main

raise SystemExit(main())
