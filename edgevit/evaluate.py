"""Top-1/top-5 accuracy and a confusion summary of a PyTorch model on labelled data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import DataError


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean per sample: is the label among the k highest logits?"""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


@dataclass
class EvalReport:
    source: str
    data: str
    samples: int
    top1: float
    top5: float
    per_class: dict[str, float] = field(default_factory=dict)
    confusions: list[dict] = field(default_factory=list)  # most frequent (true, predicted) errors
    confusion_matrix: list[list[int]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy_report(logits: np.ndarray, labels: np.ndarray, class_names: list[str] | None,
                    source: str = "", data: str = "", top_confusions: int = 5) -> EvalReport:
    if len(logits) == 0:
        raise DataError(f"{data}: no samples to evaluate")
    if len(labels) != len(logits):
        raise DataError(f"{data}: {len(labels)} labels for {len(logits)} samples")
    num_classes = logits.shape[1]
    # one name per model class: names the data lacks (fewer classes than the model) are the index
    names = list(class_names or [])[:num_classes]
    names += [str(i) for i in range(len(names), num_classes)]
    pred = logits.argmax(axis=1)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, pred), 1)
    per_class = {
        names[c]: round(float(matrix[c, c] / matrix[c].sum()), 4) for c in range(num_classes) if matrix[c].sum()
    }
    off = [(int(matrix[t, p]), t, p) for t in range(num_classes) for p in range(num_classes) if t != p and matrix[t, p]]
    off.sort(reverse=True)
    return EvalReport(
        source=source,
        data=data,
        samples=int(len(labels)),
        top1=float((pred == labels).mean()),
        top5=float(topk_correct(logits, labels, 5).mean()),
        per_class=per_class,
        confusions=[{"true": names[t], "predicted": names[p], "count": n} for n, t, p in off[:top_confusions]],
        confusion_matrix=matrix.tolist(),
    )


def predict_logits(model, images: np.ndarray, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    import torch

    model = model.to(device).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device)
            out.append(model(batch).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.num_classes), np.float32)


def evaluate(source: str, data: str | None = None, split: str = "test", arch: str | None = None,
             batch_size: int = 256, preprocessed: bool = False, model_overrides: dict | None = None) -> EvalReport:
    """Load SOURCE and measure it on labelled data (by default the bundled digits' test split, for a
    model they fit: 1x8x8 input; another model needs ``data``, DataError otherwise).

    ``preprocessed``: a .npz holds model input already, not raw pixels (``--preprocessed``).
    ``model_overrides``: config fields for :func:`edgevit.load_model` (``--num-heads``, ``--act``, ...)."""
    from .data import load_dataset
    from .data.defaults import default_data
    from .models import load_model

    model = load_model(source, arch=arch, **(model_overrides or {}))
    c = model.config
    data = default_data(data, (c.in_chans, c.img_size, c.img_size), "--data")
    dataset = load_dataset(data, model.preprocessing, split=split, num_classes=model.config.num_classes,
                           preprocessed=preprocessed, model_labels=model.labels)
    if dataset.labels is None:
        raise DataError(f"{data}: has no labels; evaluation needs labelled data (an ImageFolder, digits, or .npz with labels)")
    logits = predict_logits(model, dataset.images, batch_size)
    names = model.labels or dataset.class_names
    return accuracy_report(logits, dataset.labels, names, source=str(source), data=f"{dataset.source}:{split}")
