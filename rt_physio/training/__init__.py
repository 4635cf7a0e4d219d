"""Training and evaluation: dataset loaders, masked-patch pre-training, fine-tuning, metrics, splits.

Command-line entry points: ``rt-physio train pretrain``, ``rt-physio train finetune``, ``rt-physio evaluate``
(:mod:`rt_physio.training.cli`). Heavy imports (torch, scikit-learn, pyedflib, wfdb) happen inside the modules
that need them, so ``rt-physio --help`` stays fast.
"""
