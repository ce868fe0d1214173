"""The design-space exploration service: composes ``accelerator`` (hardware cost model) and
``snn`` (spiking networks, lottery tickets, u-Ticket balancing).

- :class:`dse.design.DesignPoint`: accelerator x mapping x pruning schedule x network setting;
- :func:`dse.trial.run_trial`: one design point end to end (train -> prune -> score);
- ``python -m dse.evaluate``: one design point from the command line;
- :mod:`dse.tickets`: ticket identity; a trained ticket scores every design point it serves;
- ``python -m dse.search``: the Optuna study on Ray workers (``sampler.name: exhaustive``:
  every point of a finite space, :mod:`dse.exhaustive`).
"""
