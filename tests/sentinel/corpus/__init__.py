"""The scenario corpus: real failures of real processes, each diagnosed the way the daemon diagnoses it.

- ``harness.py``: Scenario, Plan, Run; runs one scenario (or many at once) and judges its diagnoses.
- ``blocks.py``: the monitor config blocks and service parameters the scenarios are written with.
- ``scenarios_*.py``: the scenarios, by cause family; ``catalogue.py`` lists them all.
- ``services/``: the services (``service_kit.py`` holds their parameters, log formats and routine noise),
  ``services/helpers/`` what they talk to (a loopback API, a database stand-in, a port holder, a lock
  holder, a reaper), and ``services/vendor/`` stand-ins for client libraries this venv lacks, which raise
  the libraries' own exceptions with their own messages.
- ``test_corpus.py``: the pytest run; ``bench/rootcause_accuracy.py``: the accuracy table.

To add a scenario: write (or reuse) a service, a ``build(run) -> Plan`` beside the others of its family,
and a :class:`~tests.sentinel.corpus.harness.Scenario` naming the cause and the line that proves it.
"""
