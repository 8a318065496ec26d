"""Training: one loop (`loop`) that every stage runs on, the optimizers (`optim`), and the
stages themselves: pretraining on raw text (`pretrain`)."""
