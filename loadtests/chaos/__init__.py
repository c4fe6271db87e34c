"""`python -m loadtests.chaos --minutes M --seed S`: steady load through a seeded, reproducible
schedule of faults, then a check that no acknowledged event was lost, duplicated or reordered.

- `schedule` draws the faults from the seed (pure: the same seed gives the same run plan);
- `faults` applies them to an embedded `ReferenceCluster` (servers on a NATS cluster);
- `load` runs the publishers (recording what the servers acknowledged) and the subscribers
  (reconnecting with `Last-Event-ID` to any instance when their stream breaks);
- `checker` compares the two records (pure) and `report` writes the table, JSON and PNG.
"""
