import os

# The fault injector forks helpers (pg_ctl as another user: fork, not vfork) while gRPC clients
# are busy; gRPC's fork handlers then crash the child before it can exec. Nothing here needs
# gRPC in a forked child, so they are switched off before grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

from .cli import main  # after the environment is set

raise SystemExit(main())
