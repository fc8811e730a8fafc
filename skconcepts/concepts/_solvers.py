"""Torch solvers for NMF, semi-NMF and convex NMF (module-private, testable).

The three problems factor activations ``X`` (n, d) as ``X ~ Z @ D`` with codes
``Z >= 0`` (n, k) and a dictionary ``D`` (k, d):

* NMF: ``D >= 0`` as well (``X >= 0``);
* semi-NMF: ``D`` is free (Ding, Li & Jordan, 2010);
* convex NMF: ``D = W @ X`` with ``W >= 0`` (k, n) whose rows sum to one, so
  every concept is a convex combination of training rows (same paper).

Every solver alternates a codes step and a dictionary step. The data enter only
through two ``n x d x k`` matrix products per iteration (``D @ X.T`` and
``Z.T @ X``; convex NMF needs two more); everything else works on ``k x k``,
``k x d`` or ``k x n`` matrices. The objective is evaluated from Gram matrices,
``||X||^2 - 2 <Z^T X, D> + <Z^T Z, D D^T>``, so no reconstruction and no
``n x n`` matrix is ever formed: time and memory are linear in ``n``.

Codes are kept transposed, ``Zt`` (k, n), so that each HALS update reads and
writes one contiguous row. Everything stays in float32 on the input's device;
only ``k x k``/``k x d`` reductions use float64.

References
----------
Cichocki & Phan (2009), "Fast local algorithms for large scale nonnegative matrix
and tensor factorizations" (HALS). Gillis & Glineur (2012), "Accelerated
multiplicative updates and hierarchical ALS algorithms for NMF" (inner sweeps).
Ang & Gillis (2019), "Accelerating nonnegative matrix factorization algorithms
using extrapolation" (the ``_Extrapolation`` scheme). Ding, Li & Jordan (2010),
"Convex and semi-nonnegative matrix factorizations".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from skconcepts.utils._progress import progress_bar

__all__ = [
    "FitResult",
    "sum_squares",
    "squared_error",
    "inner_sweeps",
    "top_singular",
    "largest_eigenvalue_gram",
    "init_nndsvd",
    "init_random",
    "init_kmeans",
    "hals_sweeps_",
    "least_squares_dictionary",
    "nnls_codes",
    "codes_and_error",
    "top_k_codes",
    "top_k_refine",
    "nmf_hals",
    "semi_nmf_als",
    "convex_nmf_pg",
]

#: iterations between two convergence checks (a check syncs a GPU)
CHECK_EVERY = 10
#: NNLS used by ``transform``: max sweeps, per-row tolerance, rows per batch
NNLS_MAX_SWEEPS = 400
NNLS_TOL = 1e-5
NNLS_BATCH = 16384
#: above this many concepts, HALS sweeps go block by block
_HALS_BLOCK_ABOVE = 64
#: rows per chunk for float64 reductions over X
_CHUNK = 8192


@dataclass
class FitResult:
    """What a solver returns.

    ``codes`` (n, k), ``components`` (k, d), ``n_iter``, ``sq_error`` (the
    squared Frobenius error of ``codes @ components``), and for convex NMF the
    ``weights`` (k, n) with ``components == weights @ X``.
    """

    codes: torch.Tensor
    components: torch.Tensor
    n_iter: int
    sq_error: float
    weights: torch.Tensor | None = None


# --------------------------------------------------------------------- helpers
def sum_squares(X: torch.Tensor) -> torch.Tensor:
    """``||X||_F^2`` accumulated in float64, chunk by chunk (0-d tensor)."""
    total = torch.zeros((), dtype=torch.float64, device=X.device)
    for start in range(0, X.shape[0], _CHUNK):
        total += (
            torch.linalg.vector_norm(X[start : start + _CHUNK], dtype=torch.float64)
            ** 2
        )
    return total


def squared_error(xx, M, N, D) -> torch.Tensor:
    """``||X - Z D||_F^2`` from ``xx = ||X||^2``, ``M = Z^T X``, ``N = Z^T Z``.

    A float64 0-d tensor clamped at 0 (no sync, no reconstruction).
    """
    M64, N64, D64 = M.double(), N.double(), D.double()
    err = xx - 2.0 * torch.sum(M64 * D64) + torch.sum(N64 * (D64 @ D64.T))
    return err.clamp(min=0.0)


def _safe_reciprocal(v):
    positive = v > 0
    return torch.where(positive, v, torch.ones_like(v)).reciprocal() * positive


def inner_sweeps(k: int, d: int) -> int:
    """HALS sweeps on the codes per product with the data (Gillis & Glineur, 2012).

    A sweep costs about ``2 n k^2`` against ``2 n d k`` for the product ``X D^T``
    it reuses, so narrow dictionaries get more sweeps: ``1 + d / (8 (k + 1))``,
    between 1 and 4 (3 for ``k = 20, d = 384``).
    """
    return int(min(4, 1 + d // (8 * (k + 1))))


# ------------------------------------------------------------------------ init
def _gram(X: torch.Tensor) -> torch.Tensor:
    """``X^T X`` (d, d). On the CPU through numpy, which detects the transposed
    product of one buffer and calls BLAS ``syrk``: half the flops of torch's
    general product (about 2x faster at ``50650 x 384``)."""
    if X.device.type == "cpu" and not X.requires_grad:
        Xn = X.numpy()
        return torch.from_numpy(Xn.T @ Xn)
    return X.T @ X


def top_singular(X: torch.Tensor, k: int, generator=None):
    """Top-``k`` singular triplets of ``X``: ``U`` (n, k), ``S`` (k,), ``Vt`` (k, d).

    For ``d <= 1024`` through the ``d x d`` Gram matrix (eigendecomposition in
    float64, exact and deterministic); else a randomized range finder (Halko et
    al., 2011) with 4 power iterations seeded by ``generator``. Never ``n x n``.
    """
    n, d = X.shape
    if d <= 1024:
        G = _gram(X)  # (d, d)
        evals, evecs = torch.linalg.eigh(G.double())
        order = torch.argsort(evals, descending=True)[:k]
        S = evals[order].clamp(min=0).sqrt().to(X.dtype)  # (k,)
        V = evecs[:, order].to(X.dtype)  # (d, k)
    else:
        p = min(k + 10, d)
        omega = torch.randn(d, p, generator=generator).to(X.device, X.dtype)
        Q = torch.linalg.qr(X @ omega).Q  # (n, p)
        for _ in range(4):
            Q = torch.linalg.qr(X.T @ Q).Q  # (d, p)
            Q = torch.linalg.qr(X @ Q).Q  # (n, p)
        small = Q.T @ X  # (p, d)
        _, s, vt = torch.linalg.svd(small.double(), full_matrices=False)
        S = s[:k].to(X.dtype)
        V = vt[:k].T.to(X.dtype)  # (d, k)
    U = (X @ V) * _safe_reciprocal(S)  # (n, k)
    return U, S, V.T.contiguous()


def largest_eigenvalue_gram(X: torch.Tensor, n_iter: int = 30) -> torch.Tensor:
    """``||X||_2^2``, the largest eigenvalue of ``X^T X``, by power iteration.

    Deterministic (starts from the all-ones vector); ``2 n_iter`` products with
    ``X``, never ``X^T X`` itself. A float64 0-d tensor.
    """
    v = torch.ones(X.shape[1], dtype=X.dtype, device=X.device)  # (d,)
    v = v / torch.linalg.vector_norm(v)
    lam = torch.zeros((), dtype=torch.float64, device=X.device)
    for _ in range(n_iter):
        w = X.T @ (X @ v)  # (d,)
        lam = torch.dot(v.double(), w.double())
        v = w / torch.clamp(torch.linalg.vector_norm(w), min=1e-30)
    return lam


def init_nndsvd(X: torch.Tensor, k: int, variant: str = "nndsvda", generator=None):
    """NNDSVD initialisation (Boutsidis & Gallopoulos, 2008) as in scikit-learn.

    Returns ``Zt`` (k, n) and ``D`` (k, d), both ``>= 0``. ``variant`` is
    ``"nndsvd"`` (zeros kept), ``"nndsvda"`` (zeros filled with the mean of
    ``X``) or ``"nndsvdar"`` (zeros filled with small random values).
    """
    U, S, Vt = top_singular(X, k, generator)
    up, un = U.clamp(min=0), (-U).clamp(min=0)  # (n, k)
    vp, vn = Vt.clamp(min=0), (-Vt).clamp(min=0)  # (k, d)
    upn, unn = torch.linalg.vector_norm(up, dim=0), torch.linalg.vector_norm(un, dim=0)
    vpn, vnn = torch.linalg.vector_norm(vp, dim=1), torch.linalg.vector_norm(vn, dim=1)
    m_pos, m_neg = upn * vpn, unn * vnn
    use_pos = m_pos > m_neg  # (k,)
    u = torch.where(use_pos, up * _safe_reciprocal(upn), un * _safe_reciprocal(unn))
    v = torch.where(
        use_pos[:, None],
        vp * _safe_reciprocal(vpn)[:, None],
        vn * _safe_reciprocal(vnn)[:, None],
    )
    lbd = torch.sqrt(S * torch.where(use_pos, m_pos, m_neg))  # (k,)
    Zt = (u * lbd).T.contiguous()  # (k, n)
    D = v * lbd[:, None]  # (k, d)
    # the leading pair is sign-consistent: take absolute values
    Zt[0] = U[:, 0].abs() * S[0].sqrt()
    D[0] = Vt[0].abs() * S[0].sqrt()
    Zt[Zt < 1e-6] = 0
    D[D < 1e-6] = 0
    if variant == "nndsvda":
        avg = X.mean()
        Zt[Zt == 0] = avg
        D[D == 0] = avg
    elif variant == "nndsvdar":
        avg = float(X.mean())
        for T in (Zt, D):
            mask = T == 0
            noise = torch.randn(int(mask.sum()), generator=generator).abs()
            T[mask] = (noise * (avg / 100)).to(T.device, T.dtype)
    return Zt, D


def init_random(X: torch.Tensor, k: int, generator=None):
    """Scaled ``|N(0, 1)|`` codes and dictionary (scikit-learn's ``init='random'``).

    Returns ``Zt`` (k, n) and ``D`` (k, d); the scale ``sqrt(mean(|X|) / k)``
    makes ``Z @ D`` of the order of ``X``.
    """
    n, d = X.shape
    scale = math.sqrt(float(X.abs().mean()) / k)
    Zt = torch.randn(k, n, generator=generator).abs_().mul_(scale)
    D = torch.randn(k, d, generator=generator).abs_().mul_(scale)
    return Zt.to(X.device, X.dtype), D.to(X.device, X.dtype)


def init_kmeans(X: torch.Tensor, k: int, generator=None, n_iter: int = 10):
    """k-means++ seeding then ``n_iter`` Lloyd iterations, in torch.

    Returns the membership weights ``W`` (k, n) (rows sum to one; an empty
    cluster keeps its seed row) and the centroids ``D = W @ X`` (k, d).
    Memory is linear in ``n``: distances are (n, k).
    """
    n = X.shape[0]
    sq = torch.sum(X * X, dim=1)  # (n,)
    first = int(torch.randint(n, (1,), generator=generator))
    seeds = [first]
    d2 = (sq - 2 * (X @ X[first]) + sq[first]).clamp(min=0)  # (n,)
    for _ in range(1, k):
        p = d2.double().cpu()
        if float(p.sum()) <= 0:
            p = torch.ones(n, dtype=torch.float64)
        nxt = int(torch.multinomial(p / p.sum(), 1, generator=generator))
        seeds.append(nxt)
        d2 = torch.minimum(d2, (sq - 2 * (X @ X[nxt]) + sq[nxt]).clamp(min=0))
    seeds_t = torch.tensor(seeds, device=X.device)
    W = torch.zeros(k, n, dtype=X.dtype, device=X.device)
    W[torch.arange(k, device=X.device), seeds_t] = 1.0
    D = X[seeds_t].clone()  # (k, d)
    cols = torch.arange(n, device=X.device)
    for _ in range(n_iter):
        dist = -2 * (X @ D.T) + torch.sum(D * D, dim=1)  # (n, k), up to ||x||^2
        labels = torch.argmin(dist, dim=1)
        W_new = torch.zeros_like(W)
        W_new[labels, cols] = 1.0
        counts = W_new.sum(dim=1, keepdim=True)  # (k, 1)
        empty = counts[:, 0] == 0
        W_new[empty] = W[empty]  # an empty cluster keeps its previous weights
        W_new /= W_new.sum(dim=1, keepdim=True)
        W = W_new
        D = W @ X
    return W, D


# ------------------------------------------------------------ basic updates
def hals_sweeps_(Zt, Ct, B, n_sweeps: int, buf=None):
    """In-place HALS sweeps for ``min_{Zt >= 0} ||X - Zt^T D||^2`` given Gram terms.

    ``Zt`` (k, m) is updated row by row: ``Zt[j] <- max(0, Zt[j] + (Ct[j] -
    B[j] @ Zt) / B[j, j])`` with ``Ct = D @ X.T`` (k, m) and ``B = D @ D.T``
    (k, k). A row with ``B[j, j] == 0`` (a dead atom) is left as it is. The same
    function updates a non-negative dictionary (``Zt = D``, ``Ct = Z^T X``,
    ``B = Z^T Z``). Each row's update depends only on its own column, so a row
    gives the same result whatever else is in the batch.
    """
    k, m = Zt.shape
    inv = _safe_reciprocal(torch.diagonal(B))  # (k,)
    if k > _HALS_BLOCK_ABOVE:
        return _blocked_hals_sweeps_(Zt, Ct, B, inv, n_sweeps)
    if buf is None:
        buf = Zt.new_empty(m)
    ZtT = Zt.T  # (m, k) view
    for _ in range(n_sweeps):
        for j in range(k):
            torch.addmv(Ct[j], ZtT, B[j], alpha=-1.0, out=buf)  # Ct_j - B_j Zt
            Zt[j].addcmul_(buf, inv[j]).clamp_(min=0.0)
    return Zt


def _blocked_hals_sweeps_(Zt, Ct, B, inv, n_sweeps, block=16):
    """The same HALS sweeps, for large ``k``: rows in blocks of ``block``.

    The residual correlations of a block come from one matrix product with the
    current codes; inside the block, rank-one corrections keep them exact. Memory
    traffic drops from ``k^2 m`` to ``k * block * m`` per sweep.
    """
    k = Zt.shape[0]
    for _ in range(n_sweeps):
        for j0 in range(0, k, block):
            j1 = min(j0 + block, k)
            R = torch.addmm(Ct[j0:j1], B[j0:j1], Zt, alpha=-1.0)  # (b, m)
            for j in range(j0, j1):
                old = Zt[j].clone()
                Zt[j].addcmul_(R[j - j0], inv[j]).clamp_(min=0.0)
                if j + 1 < j1:
                    R[j - j0 + 1 :].addr_(B[j + 1 : j1, j], Zt[j] - old, alpha=-1.0)
    return Zt


def least_squares_dictionary(M, N):
    """``argmin_D ||X - Z D||^2 = N^{-1} M`` with ``M = Z^T X``, ``N = Z^T Z``.

    Solved in float64 by Cholesky with a tiny ridge (``1e-7`` of the mean
    diagonal) so that a dead code column gives a zero atom instead of NaN.
    """
    N64 = N.double()
    k = N64.shape[0]
    ridge = 1e-7 * torch.clamp(N64.diagonal().mean(), min=1e-30)
    eye = torch.eye(k, dtype=torch.float64, device=N.device)
    L, info = torch.linalg.cholesky_ex(N64 + ridge * eye)
    if int(info) != 0:  # pragma: no cover - ridge makes N positive definite
        return (torch.linalg.pinv(N64) @ M.double()).to(M.dtype)
    return torch.cholesky_solve(M.double(), L).to(M.dtype).contiguous()


def nnls_codes(
    X,
    D,
    *,
    max_sweeps: int = NNLS_MAX_SWEEPS,
    tol: float = NNLS_TOL,
    batch_size: int = NNLS_BATCH,
    progress: bool | None = None,
):
    """Codes ``Z >= 0`` minimising ``||X - Z D||^2`` with ``D`` fixed (``transform``).

    Batched over rows (no ``n x n``, memory ``O(batch_size * k)``). Each row
    starts from its clipped least-squares solution and runs HALS sweeps until its
    largest change over :data:`CHECK_EVERY` sweeps is at most ``tol`` times its
    largest code; converged rows are frozen, so a row's codes do not depend on the
    other rows of the batch.

    Parameters
    ----------
    X : torch.Tensor of shape (n, d)
    D : torch.Tensor of shape (k, d)

    Returns
    -------
    Z : torch.Tensor of shape (n, k)
    """
    n = X.shape[0]
    k = D.shape[0]
    B = D @ D.T  # (k, k)
    B_pinv = torch.linalg.pinv(B.double()).to(D.dtype)  # (k, k)
    out = X.new_empty((n, k))
    bar = progress_bar(total=n, progress=progress, desc="transform", leave=False)
    for start in range(0, n, batch_size):
        Xb = X[start : start + batch_size]
        Ct = D @ Xb.T  # (k, m)
        m = Ct.shape[1]
        Zt = torch.empty_like(Ct)
        CtT = Ct.T  # (m, k)
        for j in range(k):  # clipped least squares, row by row
            torch.mv(CtT, B_pinv[j], out=Zt[j])
        Zt.clamp_(min=0.0)
        rows = torch.arange(start, start + m, device=X.device)
        for _ in range(0, max_sweeps, CHECK_EVERY):
            old = Zt.clone()
            hals_sweeps_(Zt, Ct, B, CHECK_EVERY)
            change = (Zt - old).abs().amax(dim=0)  # (m,)
            done = change <= tol * Zt.abs().amax(dim=0)
            if bool(done.any()):
                out[rows[done]] = Zt[:, done].T
                keep = ~done
                Zt, Ct, rows = (
                    Zt[:, keep].contiguous(),
                    Ct[:, keep].contiguous(),
                    rows[keep],
                )
            if rows.numel() == 0:
                break
        if rows.numel():
            out[rows] = Zt.T
        bar.update(m)
    bar.close()
    return out


def codes_and_error(X, D, *, progress=None, top_k=None):
    """Final codes of the training rows and their squared error.

    The codes are ``top_k_codes(X, D, top_k)`` (``nnls_codes`` when ``top_k`` is
    ``None``), exactly what ``transform`` returns, so
    ``fit_transform(X)`` equals ``fit(X).transform(X)``; the error is computed
    from Gram matrices (float64 0-d reductions, no reconstruction).
    """
    Z = top_k_codes(X, D, top_k, progress=progress)  # (n, k)
    M, N = Z.T @ X, Z.T @ Z  # (k, d), (k, k)
    return Z, float(squared_error(sum_squares(X), M, N, D))


def top_k_codes(X, D, top_k, *, max_sweeps=NNLS_MAX_SWEEPS, progress=False):
    """Codes with at most ``top_k`` non-zero entries per row (``top_k=None``: all).

    Each row's support is the ``top_k`` largest entries of its dense codes
    (:func:`nnls_codes`); the codes are then re-solved as the non-negative least
    squares problem restricted to that support (HALS sweeps with the other entries
    held at zero, same stopping rule). A row's codes depend on that row only.

    The codes do not change when ``X`` and ``D`` are scaled together, so a
    dictionary of tiny (or huge) values, whose ``D @ D.T`` would underflow
    (overflow) into NaN codes, is scaled with ``X`` by the power of two that
    brings its largest entry near 1 (exact in floating point).

    Returns
    -------
    Z : torch.Tensor of shape (n, k)
    """
    X, D = _power_of_two_scaled(X, D)
    Z = nnls_codes(X, D, max_sweeps=max_sweeps, progress=progress)  # (n, k)
    k = D.shape[0]
    if top_k is None or top_k >= k:
        return Z
    idx = Z.topk(top_k, dim=1).indices  # (n, top_k)
    if top_k <= EXACT_SUPPORT_MAX:
        return _support_nnls(X, D, idx)
    mask = torch.zeros_like(Z).scatter_(1, idx, 1.0)  # (n, k)
    B = D @ D.T  # (k, k)
    for start in range(0, Z.shape[0], NNLS_BATCH):
        stop = start + NNLS_BATCH
        Ct = D @ X[start:stop].T  # (k, m)
        Mt = mask[start:stop].T.contiguous()  # (k, m)
        Zt = (Z[start:stop].T * Mt).contiguous()
        for _ in range(0, max_sweeps, CHECK_EVERY):
            old = Zt.clone()
            _masked_hals_sweeps_(Zt, Ct, B, Mt, CHECK_EVERY)
            change = (Zt - old).abs().amax()
            if float(change) <= NNLS_TOL * float(Zt.abs().amax().clamp(min=1e-30)):
                break
        Z[start:stop] = Zt.T
    return Z


#: activations whose largest |value| is below this are fitted scaled up
TINY = 2.0**-32


def _exponent_of_max(T):
    """``e`` with ``2**e <= max |T| < 2**(e + 1)``; ``None`` if that is 0 or not
    finite (or ``T`` is empty)."""
    top = float(T.abs().amax()) if T.numel() else 0.0
    return math.frexp(top)[1] - 1 if math.isfinite(top) and top > 0 else None


def tiny_scaled_up(X):
    """``(X * 2**-e, e)``: ``X`` scaled so that its largest |value| is in [1, 2)
    when it is below :data:`TINY` (``e = 0`` and ``X`` itself otherwise)."""
    e = _exponent_of_max(X)
    if e is None or 2.0**e >= TINY:
        return X, 0
    return torch.ldexp(X, X.new_tensor(-e)), e


def _power_of_two_scaled(X, D):
    """``X`` and ``D`` times ``2**-e``, where ``2**e`` is about ``max |D|``,
    when that is below :data:`TINY` or above ``1 / TINY`` (else unchanged:
    no copy of ``X``, the same bits as without the scaling)."""
    e = _exponent_of_max(D)
    if e is None or TINY <= 2.0**e < 1 / TINY:
        return X, D
    return torch.ldexp(X, X.new_tensor(-e)), torch.ldexp(D, D.new_tensor(-e))


#: supports up to this size are solved exactly (every subset: 2**t - 1 solves)
EXACT_SUPPORT_MAX = 4


def _support_nnls(X, D, idx):
    """Exact non-negative least squares of each row on its own support ``idx``.

    ``idx`` (n, t) holds each row's ``t`` candidate atoms. The NNLS optimum on
    ``t`` variables is the best, among the subsets ``S`` of the support whose
    unconstrained least-squares solution on ``S`` is non-negative, of those
    solutions (the optimum is one of them, and every one is feasible): all
    ``2**t - 1`` subsets are solved batched over rows, ``t x t`` systems only,
    instead of HALS sweeps over all ``k`` atoms. Returns ``Z`` (n, k).
    """
    n, t = idx.shape
    B = D @ D.T  # (k, k)
    Z = X.new_zeros((n, D.shape[0]))
    for start in range(0, n, NNLS_BATCH):
        sup = idx[start : start + NNLS_BATCH]  # (m, t)
        c = (X[start : start + NNLS_BATCH] @ D.T).gather(1, sup).double()  # (m, t)
        Bs = B[sup[:, :, None], sup[:, None, :]].double()  # (m, t, t)
        best_z = torch.zeros_like(c)  # the empty subset: z = 0, objective 0
        best_f = c.new_zeros(c.shape[0])
        for bits in range(1, 2**t):
            S = [j for j in range(t) if bits >> j & 1]
            sub, info = torch.linalg.solve_ex(
                Bs[:, S][:, :, S], c[:, S].unsqueeze(-1)
            )  # (m, |S|, 1)
            zS = sub.squeeze(-1)
            f = -0.5 * (c[:, S] * zS).sum(dim=1)  # objective at the LS solution
            ok = (info == 0) & (zS >= 0).all(dim=1) & torch.isfinite(f)
            ok &= f < best_f
            if bool(ok.any()):
                z = torch.zeros_like(c)
                z[:, S] = zS
                best_z = torch.where(ok[:, None], z, best_z)
                best_f = torch.where(ok, f, best_f)
        Z[start : start + NNLS_BATCH].scatter_(1, sup, best_z.to(Z.dtype))
    return Z


def _masked_hals_sweeps_(Zt, Ct, B, Mt, n_sweeps):
    """:func:`hals_sweeps_` with the entries where ``Mt == 0`` held at zero."""
    inv = _safe_reciprocal(torch.diagonal(B))  # (k,)
    buf = Zt.new_empty(Zt.shape[1])
    ZtT = Zt.T  # (m, k) view
    for _ in range(n_sweeps):
        for j in range(Zt.shape[0]):
            torch.addmv(Ct[j], ZtT, B[j], alpha=-1.0, out=buf)
            Zt[j].addcmul_(buf, inv[j]).clamp_(min=0.0).mul_(Mt[j])
    return Zt


def top_k_refine(X, D, top_k, dict_step, *, n_iter=20):
    """Alternate :func:`top_k_codes` and ``dict_step(M, N, D)`` from dictionary ``D``.

    The dictionary of a dense fit is adapted to codes with at most ``top_k``
    non-zero entries per row (``n_iter`` alternations, each one codes step and
    one dictionary step on the atoms some row uses; an atom no row uses keeps its
    value). Atoms are rescaled to unit norm after each step, which leaves the
    objective unchanged and keeps rarely used atoms from blowing up. Returns the
    dictionary (k, d).
    """
    D = _unit_rows(D)
    for _ in range(n_iter):
        Z = top_k_codes(X, D, top_k)  # (n, k)
        M, N = Z.T @ X, Z.T @ Z  # (k, d), (k, k)
        usage = N.diagonal()
        live = usage > 1e-10 * torch.clamp(usage.max(), min=1e-30)  # (k,)
        D_new = D.clone()
        D_new[live] = dict_step(M[live], N[live][:, live], D[live])
        D_new = _unit_rows(D_new)
        bad = ~torch.isfinite(D_new).all(dim=1)  # an ill-conditioned step: keep
        D_new[bad] = D[bad]
        D = D_new
    return D


def _unit_rows(D):
    """Rows scaled to unit norm (the codes absorb the scale); zero rows kept."""
    norms = torch.linalg.vector_norm(D, dim=1, keepdim=True)  # (k, 1)
    return D * _safe_reciprocal(norms)


# ------------------------------------------------------------- extrapolation
class _Extrapolation:
    """Adaptive extrapolation with restarts (Ang & Gillis, 2019), kept on device.

    After each iteration the new iterate is pushed ``beta`` further along the
    last step. When the error goes up, the extrapolated point is dropped
    (restart) and ``beta`` shrinks; otherwise ``beta`` grows slowly, capped by
    ``beta_max`` which itself grows towards 1. No host sync: the decision is a
    ``torch.where`` on 0-d tensors.
    """

    def __init__(self, device, beta=0.5, eta=1.5, gamma=1.05, gamma_bar=1.01):
        def t(v):
            return torch.tensor(v, dtype=torch.float64, device=device)

        self.beta, self.beta_max = t(beta), t(1.0)
        self.eta, self.gamma, self.gamma_bar = eta, gamma, gamma_bar

    def push(self, new, old, nonneg=True, out=None):
        """``new + beta (new - old)``, clamped at 0 if ``nonneg``; into ``out``."""
        out = torch.sub(new, old, out=out)
        out.mul_(self.beta.to(new.dtype)).add_(new)
        return out.clamp_(min=0.0) if nonneg else out

    def update(self, worse):
        """``worse``: 0-d bool tensor, error went up this iteration."""
        beta, beta_max = self.beta, self.beta_max
        self.beta = torch.where(
            worse, beta / self.eta, torch.minimum(beta_max, self.gamma * beta)
        )
        self.beta_max = torch.where(
            worse, beta, torch.clamp(self.gamma_bar * beta_max, max=1.0)
        )


class _Monitor:
    """Stopping rule of scikit-learn's NMF, checked every ``CHECK_EVERY`` iterations.

    Stops when ``(previous_error - error) / initial_error < tol`` where errors are
    Frobenius norms of the best iterate so far. Owns the progress bar.
    """

    def __init__(self, sq_error0, tol, max_iter, progress, desc):
        self.tol = tol
        self.err0 = math.sqrt(float(sq_error0))
        self.prev = self.err0
        self.bar = progress_bar(
            total=max_iter, progress=progress, desc=desc, leave=False
        )

    def stop(self, it, best_sq_error):
        self.bar.update(1)
        if it % CHECK_EVERY:
            return False
        err = math.sqrt(float(best_sq_error))
        self.bar.set_postfix(error=f"{err:.4g}", refresh=False)
        done = self.err0 == 0 or (self.prev - err) / self.err0 < self.tol
        self.prev = err
        return done

    def close(self):
        self.bar.close()


def _keep_best(best, cand, better):
    return [torch.where(better, c, b) for b, c in zip(best, cand)]


# ------------------------------------------------------------------- solvers
def _alternating(
    X, Zt, D, dict_step, *, nonneg_dict, inner_z, max_iter, tol, progress, desc
):
    """Shared loop of NMF and semi-NMF: HALS codes, ``dict_step``, extrapolation.

    The (k, n) code matrices live in six buffers allocated once: a fresh
    (k, n) tensor per step costs the kernel a page fault per 4 KiB of it when
    the allocator returns large blocks to the system, which made an iteration
    up to 1.8x slower in a process that had run a model before.
    """
    xx = sum_squares(X)
    buf = X.new_empty(X.shape[0])
    M, N = Zt @ X, Zt @ Zt.T  # (k, d), (k, k)
    err = squared_error(xx, M, N, D)
    Zt = Zt.contiguous()
    best_Z, best_D, best_err = Zt.clone(), D, err
    monitor = _Monitor(err, tol, max_iter, progress, desc)
    ext = _Extrapolation(X.device)
    Zt_hat, D_hat = Zt.clone(), D.clone()
    Zt_new, Zt_try = torch.empty_like(Zt), torch.empty_like(Zt)  # (k, n)
    Ct = torch.empty_like(Zt)  # (k, n)
    it = 0
    try:
        for it in range(1, max_iter + 1):
            # codes step from the extrapolated point, against the extrapolated atoms
            torch.matmul(D_hat, X.T, out=Ct)  # (k, n)
            B = D_hat @ D_hat.T  # (k, k)
            hals_sweeps_(Zt_new.copy_(Zt_hat), Ct, B, inner_z, buf)
            ext.push(Zt_new, Zt, out=Zt_try)
            # dictionary step against the extrapolated codes
            M, N = Zt_try @ X, Zt_try @ Zt_try.T  # (k, d), (k, k)
            D_new = dict_step(M, N, D_hat)
            err_new = squared_error(xx, M, N, D_new)  # error of (Zt_try, D_new)
            D_try = ext.push(D_new, D, nonneg=nonneg_dict)
            worse = err_new > err
            torch.where(worse, Zt_new, Zt_try, out=Zt_hat)
            D_hat = torch.where(worse, D_new, D_try)
            ext.update(worse)
            better = err_new < best_err
            torch.where(better, Zt_try, best_Z, out=best_Z)
            best_D = torch.where(better, D_new, best_D)
            best_err = torch.where(better, err_new, best_err)
            Zt, Zt_new = Zt_new, Zt  # the old codes' buffer is the next Zt_new
            D, err = D_new, err_new
            if monitor.stop(it, best_err):
                break
    finally:
        monitor.close()
    return FitResult(best_Z.T, best_D, it, float(best_err))


def nmf_hals(X, Zt, D, *, max_iter=200, tol=1e-4, inner=None, progress=None):
    """NMF ``X ~ Z D`` with ``Z, D >= 0`` by accelerated HALS with extrapolation.

    Each iteration: ``inner`` HALS sweeps on the codes from ``C = X D^T`` and
    ``D D^T`` (default :func:`inner_sweeps`), then twice as many (cheap) sweeps on
    the dictionary from ``Z^T X`` and ``Z^T Z``. ``Zt`` (k, n) and ``D`` (k, d)
    are the initialisation.
    """
    nz = inner or inner_sweeps(Zt.shape[0], X.shape[1])
    nd = 2 * nz
    buf = X.new_empty(X.shape[1])

    def dict_step(M, N, D_start):
        return hals_sweeps_(D_start.clone(), M, N, nd, buf)

    return _alternating(
        X,
        Zt,
        D,
        dict_step,
        nonneg_dict=True,
        inner_z=nz,
        max_iter=max_iter,
        tol=tol,
        progress=progress,
        desc="NMF (hals)",
    )


def semi_nmf_als(X, Zt, *, max_iter=200, tol=1e-4, inner=None, progress=None):
    """Semi-NMF ``X ~ Z D`` with ``Z >= 0``, ``D`` free.

    The dictionary step is exact least squares (``D = (Z^T Z)^{-1} Z^T X``); the
    codes step is ``inner`` HALS sweeps (default :func:`inner_sweeps`). ``Zt``
    (k, n) is the initialisation.
    """
    inner = inner or inner_sweeps(Zt.shape[0], X.shape[1])
    D = least_squares_dictionary(Zt @ X, Zt @ Zt.T)

    def dict_step(M, N, D_start):
        return least_squares_dictionary(M, N)

    return _alternating(
        X,
        Zt,
        D,
        dict_step,
        nonneg_dict=False,
        inner_z=inner,
        max_iter=max_iter,
        tol=tol,
        progress=progress,
        desc="semi-NMF (als)",
    )


def convex_nmf_pg(X, W, *, max_iter=200, tol=1e-4, inner=None, progress=None):
    """Convex NMF ``X ~ Z W X`` with ``Z, W >= 0`` and rows of ``W`` summing to one.

    The codes step is ``inner`` HALS sweeps (default :func:`inner_sweeps`). The
    weights step is one projected gradient step on ``W`` with exact line search
    along the projected direction: the gradient ``(Z^T Z D - Z^T X) X^T`` is
    (k, n), so the ``n x n`` Gram ``X X^T`` is never formed. The step length
    adapts (doubled when the full step is taken, halved when the line search cuts
    it below one half). Rows of ``W`` are renormalised to sum to one after each
    step, the codes absorbing the scale (the objective does not change). ``W``
    (k, n) is the initialisation.
    """
    inner = inner or inner_sweeps(W.shape[0], X.shape[1])
    xx = sum_squares(X)
    sigma2 = largest_eigenvalue_gram(X)  # ||X||_2^2, for the step length
    buf = X.new_empty(X.shape[0])
    D = W @ X  # (k, d)
    Ct, B = D @ X.T, D @ D.T
    Zt = (torch.linalg.pinv(B.double()).to(X.dtype) @ Ct).clamp_(min=0.0)  # (k, n)
    M, N = Zt @ X, Zt @ Zt.T
    err = squared_error(xx, M, N, D)
    monitor = _Monitor(err, tol, max_iter, progress, "convex NMF (pg)")
    scale = torch.ones((), dtype=torch.float64, device=X.device)
    best = [Zt, W, D, err]
    it = 0
    try:
        for it in range(1, max_iter + 1):
            Ct, B = D @ X.T, D @ D.T  # (k, n), (k, k)
            Zt = hals_sweeps_(Zt.clone(), Ct, B, inner, buf)
            M, N = Zt @ X, Zt @ Zt.T  # (k, d), (k, k)
            R = N @ D - M  # (k, d): half the gradient w.r.t. D
            G = R @ X.T  # (k, n): half the gradient w.r.t. W
            lipschitz = torch.linalg.eigvalsh(N.double())[-1] * sigma2
            step = (scale / torch.clamp(lipschitz, min=1e-30)).to(X.dtype)
            W_pg = (W - step * G).clamp_(min=0.0)
            delta = W_pg - W  # (k, n): projected direction
            dD = delta @ X  # (k, d)
            num = -torch.sum(R.double() * dD.double())
            den = torch.sum(dD.double() * (N.double() @ dD.double()))
            t = torch.where(den > 0, num / torch.clamp(den, min=1e-300), 0.0).clamp(
                0.0, 1.0
            )
            W = W + t.to(X.dtype) * delta
            D = D + t.to(X.dtype) * dD
            scale = torch.where(
                t >= 0.999, scale * 2, torch.where(t < 0.5, scale / 2, scale)
            )
            err = squared_error(xx, M, N, D)  # error of (Zt, D)
            # renormalise rows of W to sum to one; codes absorb the scale
            s = torch.clamp(W.sum(dim=1), min=1e-30)  # (k,)
            W = W / s[:, None]
            D = D / s[:, None]
            Zt = Zt * s[:, None]
            best = _keep_best(best, [Zt, W, D, err], err < best[3])
            if monitor.stop(it, best[3]):
                break
    finally:
        monitor.close()
    Zt, W = best[0], best[1]
    D = W @ X  # exact convex combinations of the rows
    M, N = Zt @ X, Zt @ Zt.T
    return FitResult(Zt.T, D, it, float(squared_error(xx, M, N, D)), weights=W)
