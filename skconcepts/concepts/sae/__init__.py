"""Sparse-autoencoder concepts: ``overcomplete.sae`` modules trained through skorch.

Five estimators share one implementation (``_BaseSAEConcepts``):

======================  ================================  =====================
estimator               overcomplete module               sparsity knob
======================  ================================  =====================
``SAEConcepts``         ``SAE`` (linear encoder + ReLU)   ``l1_coef``
``TopKSAEConcepts``     ``TopKSAE``                       ``top_k`` (per row)
``BatchTopKSAEConcepts`` ``BatchTopKSAE``                 ``top_k`` (row mean)
``JumpReLUSAEConcepts`` ``JumpSAE``                       ``l0_coef``
``MPSAEConcepts``       ``MpSAE`` (matching pursuit)      ``top_k`` (steps)
======================  ================================  =====================

The package is cut by idea:

- ``_module``: the torch module ``_SAEModule``, an overcomplete SAE plus the
  decoder bias ``b_dec`` (subtracted before encoding, added after decoding) and
  the method's sparsity and dead-concept penalty;
- ``_net``: ``_SAENet``, a ``skorch.NeuralNet`` whose ``get_loss`` is
  ``MSE(x_hat, x) + penalty``;
- ``_callbacks``: ``_DeadConceptMonitor``, the skorch callback that records the
  dead fraction and resamples dead concepts;
- ``_data``: the skorch iterator over the rows of an in-memory matrix or the
  batches of a batch source (the package's one protocol,
  ``skconcepts.concepts._streaming``);
- ``_estimators``: the base class and the five estimators;
- ``_state``: the fitted net as numpy arrays and builtins and back, which
  :mod:`skconcepts.io` stores with skops in place of the net
  (``_export_state`` and ``_import_state`` of the estimators).

The decoder is affine, ``x_hat = codes @ components_ + decoder_bias_``, so the
inherited ``inverse_transform`` and ``decoder_torch`` are exact. Importing this
package imports skorch (its subclasses are defined at class level); overcomplete
is imported when a model is first built. ``import skconcepts.concepts`` imports
neither.
"""

from skconcepts.concepts.sae._estimators import (
    BatchTopKSAEConcepts,
    JumpReLUSAEConcepts,
    MPSAEConcepts,
    SAEConcepts,
    TopKSAEConcepts,
)

__all__ = [
    "SAEConcepts",
    "TopKSAEConcepts",
    "BatchTopKSAEConcepts",
    "JumpReLUSAEConcepts",
    "MPSAEConcepts",
]

# The public home of the estimators: estimator discovery (which skips private
# modules), pickles and the docs name them ``skconcepts.concepts.sae.<Name>``.
for _cls in (
    SAEConcepts,
    TopKSAEConcepts,
    BatchTopKSAEConcepts,
    JumpReLUSAEConcepts,
    MPSAEConcepts,
):
    _cls.__module__ = __name__
del _cls
