"""A small, deterministic training loop for the demo, the tests, and SIS's retrain-on-subsets check.

Not a general trainer: it fits tiny models on in-memory tensors in seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from auditors.engine import model_device, normalize


@dataclass
class TrainResult:
    train_accuracy: float
    epochs: int
    final_loss: float


def train_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    epochs: int = 8,
    batch_size: int = 32,
    lr: float = 3e-3,
    weight_decay: float = 0.05,
    seed: int = 0,
) -> TrainResult:
    """AdamW + one-cycle schedule, no augmentation (it would move the planted artifacts);
    `images` [N,3,H,W] in [0,1]. Returns accuracy on the training set."""
    device = model_device(model)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = images.shape[0]
    steps = epochs * ((n + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    loss_val = float("nan")
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            x = images[idx].to(device)
            y = labels[idx].to(device)
            loss = F.cross_entropy(model(normalize(x, mean_t, std_t)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_val = float(loss.detach())
    model.eval()
    with torch.no_grad():
        correct = 0
        for i in range(0, n, 256):
            x = normalize(images[i : i + 256].to(device), mean_t, std_t)
            correct += int((model(x).argmax(1).cpu() == labels[i : i + 256]).sum())
    return TrainResult(train_accuracy=correct / n, epochs=epochs, final_loss=loss_val)
