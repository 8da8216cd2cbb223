"""Every common loss on fixed data, with the gradients it sends back to the input."""

import torch
import torch.nn as nn
import torch.nn.functional as F

x = torch.sin(torch.arange(24, dtype=torch.float32)).reshape(6, 4) * 2
target = torch.cos(torch.arange(24, dtype=torch.float32)).reshape(6, 4)
labels = torch.tensor([0, 3, 1, 2, 3, 0])
losses = {
    "mse": lambda z: F.mse_loss(z, target),
    "l1": lambda z: nn.L1Loss(reduction="sum")(z, target),
    "smooth_l1": lambda z: F.smooth_l1_loss(z, target, beta=0.5),
    "huber": lambda z: nn.HuberLoss(delta=0.3)(z, target),
    "cross_entropy": lambda z: F.cross_entropy(z, labels),
    "ce_weighted": lambda z: nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5, 1.0]),
                                                 ignore_index=1)(z, labels),
    "ce_soft": lambda z: F.cross_entropy(z, torch.softmax(target, 1), label_smoothing=0.2),
    "nll": lambda z: F.nll_loss(F.log_softmax(z, 1), labels, reduction="sum"),
    "bce": lambda z: F.binary_cross_entropy(torch.sigmoid(z), (target > 0).float()),
    "bce_logits": lambda z: nn.BCEWithLogitsLoss(pos_weight=torch.full((4,), 2.0))(
        z, (target > 0).float()),
    "kl_div": lambda z: F.kl_div(F.log_softmax(z, 1), torch.softmax(target, 1),
                                 reduction="batchmean"),
    "cosine_embedding": lambda z: F.cosine_embedding_loss(
        z, target, torch.tensor([1, -1, 1, -1, 1, -1]), margin=0.1),
}
for name, fn in losses.items():
    z = x.clone().requires_grad_(True)
    loss = fn(z)
    loss.backward()
    print(f"{name:17s} {loss.item():.6f} grad-sum {z.grad.sum().item():.6f} "
          f"grad-abs {z.grad.abs().sum().item():.6f}")
