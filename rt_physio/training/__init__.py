"""Training and evaluation: datasets, pre-training, fine-tuning, classical and hybrid fits, metrics, splits.

Command-line entry points: ``rt-physio train pretrain|probe|finetune|classical|calibrate-head|cv`` and
``rt-physio evaluate`` (:mod:`rt_physio.training.cli`); :mod:`rt_physio.training.classical` trains the classical
model. Experiments that only measure (cross-validating the deep recipe, late fusion) live in
:mod:`rt_physio.experiments`. Heavy imports (torch, scikit-learn, pyedflib, wfdb) happen inside the modules that
need them, so ``rt-physio --help`` stays fast.
"""
