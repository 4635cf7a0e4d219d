"""Experiments: scripts that measure whether something is worth building, run as ``python -m``.

They use the library (:mod:`rt_physio.training`, :mod:`rt_physio.nn`) and nothing imports them. Each writes a JSON
report that ``docs/results.md`` cites.

* :mod:`~rt_physio.experiments.crossval` — subject-fold cross-validation of the deep fusion recipe.
* :mod:`~rt_physio.experiments.late_fusion` — late fusion of the calibrated deep and classical models.
* :mod:`~rt_physio.experiments.hybrid_cv` — subject-fold cross-validation of the classical, deep and hybrid arms
  (the figures behind the shipped ``eegmat-fusion``).
* :mod:`~rt_physio.experiments.region_features` — EEG features per scalp region by 10-20 channel names (the
  ``classical_regions`` arms of the hybrid CV; not in any shipped model).
"""
