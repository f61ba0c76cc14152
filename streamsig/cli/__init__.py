"""The ``streamsig`` command line: the composition root (nothing in the library imports it).

- :mod:`.main`: the typer app and the entry point;
- :mod:`.options`: the options every command shares, defined once;
- :mod:`.demo`, :mod:`.live` (broker, produce, worker, trade), :mod:`.models` (train, evaluate,
  models list), :mod:`.backtest`, :mod:`.serve` (serve, dashboards push): one module per command group.
"""
