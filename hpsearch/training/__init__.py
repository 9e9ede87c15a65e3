"""One recipe, trained: datasets on the device, models, the training loop, transfer, retraining (torch)."""
