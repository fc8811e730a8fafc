"""classifier_output_fn: a scikit-learn linear model on a bare encoder's output,
rebuilt in torch, as the target of concept_output_gradient."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skconcepts import PCAConcepts, SplitPointActivations, concept_output_gradient
from skconcepts._pipeline import split_pipeline, torch_codec
from skconcepts._rerun import ConceptSplice, model_inputs, rerun
from skconcepts.attribution import classifier_output_fn
from skconcepts.utils._testing import make_tiny_model

TEXTS = [
    "A fine day at the beach.",
    "The soup was cold.",
    "We won the match!",
    "We lost the match, sadly.",
    "Rain again today.",
    "What a lovely film.",
]
Y3 = np.array(["a", "b", "c", "a", "b", "c"])
Y2 = np.array([1, 0, 1, 0, 0, 1])


@pytest.fixture(scope="module")
def bert():
    return make_tiny_model("bert", n_layers=3)


def _features(bert, pooling):
    model, tokenizer = bert
    if pooling == "mean":
        embed = SplitPointActivations(
            model,
            tokenizer=tokenizer,
            split_point=-1,
            granularity="sample",
            aggregation="mean",
            exclude_special_tokens=False,
            max_length=64,
        )
    else:
        embed = SplitPointActivations(
            model, tokenizer=tokenizer, split_point=-1, granularity="cls", max_length=64
        )
    return embed.fit_transform(TEXTS)


def _run(bert, fn):
    model, tokenizer = bert
    inputs = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return fn(model(**inputs), inputs=inputs).double().numpy()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize(
    "make, y",
    [
        (lambda: LogisticRegression(max_iter=500), Y3),
        (lambda: LogisticRegression(max_iter=500), Y2),
        (lambda: make_pipeline(StandardScaler(), LogisticRegression()), Y3),
        (lambda: Ridge(), Y2.astype(float)),
    ],
    ids=["multiclass", "binary", "scaled", "ridge"],
)
def test_equals_the_classifiers_decision_function(bert, pooling, make, y):
    X = _features(bert, pooling)
    clf = make().fit(X, y)
    got = _run(bert, classifier_output_fn(clf, pooling=pooling))
    expected = (
        clf.decision_function(X)
        if hasattr(clf, "decision_function")
        else clf.predict(X)
    )
    expected = expected.reshape(len(TEXTS), -1)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_gradient_to_concepts_matches_finite_differences(bert):
    """d logit / d (shift of one concept on every token of a text), both ways."""
    model, tokenizer = bert
    clf = LogisticRegression(max_iter=500).fit(_features(bert, "mean"), Y3)
    fn = classifier_output_fn(clf)
    ext = SplitPointActivations(
        model, tokenizer=tokenizer, split_point=1, granularity="word", max_length=64
    )
    pipe = make_pipeline(ext, PCAConcepts(n_concepts=4)).fit(TEXTS)
    attr = concept_output_gradient(
        TEXTS[:2],
        extractor=ext,
        concepts=pipe,
        output_fn=fn,
        granularity="sample",
        concepts_x_gradients=False,
        normalization=False,
    )
    assert [a.shape for a in attr] == [torch.Size([3, 1, 4])] * 2

    module = model.get_submodule(ext.split_module_name_)
    model_fp = model.double()
    encode, decode = torch_codec(
        split_pipeline(pipe), torch.device("cpu"), torch.float64
    )
    eps, concept = 1e-4, 2
    try:
        for i in range(2):
            (enc,), inputs = model_inputs(ext, [TEXTS[i]], torch.device("cpu"))
            # the sample unit holds the non-special tokens (exclude_special_tokens)
            real = torch.tensor(enc.special_tokens_mask) == 0  # (T,)

            def shifted(delta):
                def edit(C):
                    C = C.clone()
                    C[0, real, concept] += delta
                    return C

                splice = ConceptSplice(encode, decode, edit=edit)
                with torch.no_grad():
                    out = rerun(model_fp, module, inputs, splice)
                return fn(out, inputs=inputs)[0].numpy()

            numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)  # (3,)
            # the attribution sums the per-token gradients: a shift on every token
            np.testing.assert_allclose(
                attr[i][:, 0, concept].numpy(), numeric, rtol=2e-3, atol=1e-5
            )
    finally:
        model.float()


def test_bad_input_is_named(bert):
    with pytest.raises(TypeError, match="fitted linear model with coef_"):
        classifier_output_fn(LogisticRegression())
    X = _features(bert, "mean")
    clf = LogisticRegression().fit(X, Y2)
    with pytest.raises(ValueError, match="pooling='max' is not one of"):
        classifier_output_fn(clf, pooling="max")
    with pytest.raises(TypeError, match="only StandardScaler steps"):
        classifier_output_fn(_Pipe([("poly", object()), ("clf", clf)]))
    narrow = LogisticRegression().fit(X[:, :5], Y2)
    with pytest.raises(ValueError, match="hidden states have 32 features"):
        _run(bert, classifier_output_fn(narrow))
    model, tokenizer = bert
    inputs = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with (
        torch.no_grad(),
        pytest.raises(ValueError, match="needs the batch's attention"),
    ):
        classifier_output_fn(clf)(model(**inputs))


class _Pipe:
    def __init__(self, steps):
        self.steps = steps
