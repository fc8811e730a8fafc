"""The torch side of the SAEs: the module wrapper, its penalties, the builders.

:class:`_SAEModule` wraps an ``overcomplete.sae`` module, adds the decoder bias
``b_dec`` (subtracted before encoding, added after decoding) and computes the
method's training penalty (sparsity term plus the optional auxiliary
dead-concept term). ``forward(x)`` returns ``(pre_codes, codes, x_hat)``; the
loss is put together by the skorch net (:mod:`._net`).
"""

from __future__ import annotations

import torch

from skconcepts.utils._torch import to_tensor

#: initial value of JumpSAE's log-thresholds (as in overcomplete)
_JUMP_LOG_THRESHOLD_INIT = -3.0


def _build_overcomplete(
    method, n_features, n_concepts, top_k, threshold_momentum, kernel, bandwidth
):
    """Instantiate the overcomplete SAE of ``method`` on the CPU."""
    # deferred: overcomplete is heavy (pulls in matplotlib and einops, ~3 s)
    from overcomplete.sae import SAE, BatchTopKSAE, JumpSAE, MpSAE, TopKSAE

    if method == "relu":
        return SAE(n_features, n_concepts)
    if method == "topk":
        return TopKSAE(n_features, n_concepts, top_k=top_k)
    if method == "batchtopk":
        return BatchTopKSAE(
            n_features, n_concepts, top_k=top_k, threshold_momentum=threshold_momentum
        )
    if method == "jumprelu":
        return JumpSAE(n_features, n_concepts, kernel=kernel, bandwidth=bandwidth)
    if method == "mp":
        return MpSAE(n_features, n_concepts, k=top_k)
    raise ValueError(f"Unknown SAE method {method!r}.")


def _encoder_linear(sae):
    """The encoder's ``nn.Linear`` (None for matching pursuit, which has none)."""
    block = getattr(getattr(sae, "encoder", None), "final_block", None)
    return None if block is None else block[0]


def _topk_auxiliary(residual, pre_codes, codes, dictionary):
    """AuxK term of overcomplete's ``top_k_auxiliary_loss`` (without the MSE).

    The residual is predicted from the top half of the concepts that were not
    chosen (Gao et al., 2024), which gives dead concepts a gradient.
    """
    pre = torch.relu(pre_codes) - codes  # (n, k): drop the chosen concepts
    aux = torch.topk(pre, k=pre.shape[1] // 2, dim=1)
    pre = torch.zeros_like(codes).scatter(-1, aux.indices, aux.values)
    return (residual - pre @ dictionary).square().mean()


class _SAEModule(torch.nn.Module):
    """An overcomplete SAE with a decoder bias and its own training penalty.

    ``forward(x)`` returns ``(pre_codes, codes, x_hat)`` where
    ``x_hat = decode(codes) = codes @ D + b_dec``; ``penalty(x, pre_codes,
    codes, x_hat)`` is the method's sparsity term plus the optional auxiliary
    dead-concept term. Construction never touches the global torch RNG:
    overcomplete's own initialisation runs inside ``torch.random.fork_rng`` and
    is then replaced by a draw from a local generator seeded with ``seed``.
    """

    def __init__(
        self,
        method,
        n_features,
        n_concepts,
        *,
        top_k=None,
        threshold_momentum=0.9,
        kernel="silverman",
        bandwidth=1e-3,
        sparsity_coef=0.0,
        dead_concepts=None,
        aux_coef=0.0,
        bias_init=None,
        decoder_bias=True,
        seed=0,
    ):
        super().__init__()
        self.method = method
        self.top_k = top_k
        self.sparsity_coef = float(sparsity_coef)
        self.dead_concepts = dead_concepts
        self.aux_coef = float(aux_coef)
        with torch.random.fork_rng(devices=[]):
            self.sae = _build_overcomplete(
                method,
                n_features,
                n_concepts,
                top_k,
                threshold_momentum,
                kernel,
                bandwidth,
            )
        if decoder_bias:
            init = (
                torch.zeros(n_features) if bias_init is None else to_tensor(bias_init)
            )
            self.b_dec = torch.nn.Parameter(init.clone())
        else:
            self.register_buffer("b_dec", None)
        self._init_weights(seed)

    def _init_weights(self, seed):
        gen = torch.Generator().manual_seed(int(seed))
        weights = self.sae.dictionary._weights  # (k, d)
        with torch.no_grad():
            atoms = torch.randn(weights.shape, generator=gen)
            atoms /= atoms.norm(dim=1, keepdim=True).clamp_min(1e-12)
            weights.copy_(atoms)
            linear = _encoder_linear(self.sae)
            if linear is not None:  # tied initialisation (Gao et al., 2024)
                linear.weight.copy_(atoms)
                linear.bias.zero_()

    # ----------------------------------------------------------- the model
    def encode(self, x):  # x: (n, d) -> pre_codes, codes: (n, k)
        if self.b_dec is not None:
            x = x - self.b_dec
        if self.method == "batchtopk" and self.training:
            # our top_k is a mean per row; overcomplete's counts the batch
            self.sae.top_k = min(
                self.top_k * x.shape[0], x.shape[0] * self.sae.nb_concepts
            )
        return self.sae.encode(x)

    def decode(self, codes):  # codes: (n, k) -> (n, d)
        x_hat = self.sae.decode(codes)
        if self.b_dec is not None:
            x_hat = x_hat + self.b_dec
        return x_hat

    def forward(self, x):  # x: (n, d) -> pre_codes, codes: (n, k), x_hat: (n, d)
        pre_codes, codes = self.encode(x)
        return pre_codes, codes, self.decode(codes)

    def penalty(self, x, pre_codes, codes, x_hat):
        """Sparsity term of the method plus the auxiliary dead-concept term."""
        # deferred: overcomplete is heavy (pulls in matplotlib and einops, ~3 s)
        from overcomplete.metrics import l1
        from overcomplete.sae import heaviside
        from overcomplete.sae.losses import reanimation_regularizer

        penalty = x_hat.new_zeros(())
        if self.method == "relu" and self.sparsity_coef:
            penalty = penalty + self.sparsity_coef * l1(codes, dims=-1).mean()
        elif self.method == "jumprelu" and self.sparsity_coef:
            sae = self.sae
            l0 = heaviside(
                torch.relu(pre_codes),
                torch.exp(sae.thresholds),
                sae.kernel_fn,
                sae.bandwidth,
            )  # (n, k), pseudo-grad
            penalty = penalty + self.sparsity_coef * l0.sum(-1).mean()
        if self.dead_concepts == "auxiliary" and self.aux_coef:
            dictionary = self.sae.get_dictionary()
            if self.method in ("topk", "batchtopk"):
                aux = _topk_auxiliary(x - x_hat, pre_codes, codes, dictionary)
                penalty = penalty + self.aux_coef * aux
            else:
                penalty = penalty + reanimation_regularizer(
                    x, x_hat, pre_codes, codes, dictionary, penalty=self.aux_coef
                )
        return penalty

    # ------------------------------------------------ state and devices
    def train(self, mode=True):
        super().train(mode)
        dictionary = self.sae.dictionary
        if dictionary._fused_dictionary is not None:
            # overcomplete fuses the eval dictionary with autograd history;
            # a non-leaf tensor would not pickle
            dictionary._fused_dictionary = dictionary._fused_dictionary.detach()
        return self

    def to(self, *args, **kwargs):
        out = super().to(*args, **kwargs)
        self._sync_device()
        return out

    def __setstate__(self, state):
        super().__setstate__(state)
        self._sync_device()

    def _sync_device(self):
        """Move plain tensor attributes and ``device`` strings with the weights.

        overcomplete keeps some tensors as plain attributes (BatchTopK's running
        threshold, JumpSAE's bandwidth, the fused eval dictionary) and MpSAE
        allocates its codes on ``self.device``. This also makes a module
        unpickled from a GPU onto a CPU-only machine consistent.
        """
        device = self.sae.dictionary._weights.device
        for module in self.modules():
            for name, value in list(vars(module).items()):
                if isinstance(value, torch.Tensor):
                    setattr(module, name, value.to(device))
            if module is not self and isinstance(
                getattr(module, "device", None), (str, torch.device)
            ):
                module.device = device
