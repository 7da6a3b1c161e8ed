"""lrlab's Hydra plugins. Hydra looks for plugins only in the `hydra_plugins` namespace
package; the code lives in `trainer.sweeps`."""
