"""Loading: the target model, its example inputs, checkpoint files (read safely, pickles scanned
before anything is unpickled) and the meta-device build."""
