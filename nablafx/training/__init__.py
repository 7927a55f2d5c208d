"""Training: the one LightningModule for every model, and the loss built from params."""
