"""Training the classical model (:class:`~rt_physio.nn.classical.ClassicalModel`), one concept a module.

* :mod:`~rt_physio.training.classical.features` — EEGMAT windows cut as the engine sees them, and their features.
* :mod:`~rt_physio.training.classical.fit` — fitting and scoring the three logistic regressions.
* :mod:`~rt_physio.training.classical.crossval` — subject-fold cross-validation.
* :mod:`~rt_physio.training.classical.card` — the model card written into ``model.toml``.
* :mod:`~rt_physio.training.classical.train` — ``rt-physio train classical``: all of the above, then the model folder.
"""
