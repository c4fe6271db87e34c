"""The reference server with one deliberate defect each: the conformance suite's proof that it
catches bugs. `python -m broken_servers <name> serve [flags]` runs `reference_server.cli` with
the defect's `reference_server.extensions.Extension` (`defects` says how to write one). The names
and the requirements that must catch them are in `conformance.variants`; this package is the
server side, kept out of `conformance/` so that the suite itself only ever talks to servers over
the wire."""
