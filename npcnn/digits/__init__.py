"""The handwritten-digit application built on npcnn: MNIST, synthetic data, augmentation,
preprocessing any picture into an MNIST-like input, reading numbers, the recogniser, analysis
pictures.  It uses only npcnn's public API; npcnn itself never imports this package."""
