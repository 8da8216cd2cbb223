"""A bag-of-embeddings classifier trained with cross entropy and Adam."""

import torch
import torch.nn as nn


def deterministic_(model):
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            n = p.numel()
            p.copy_(torch.cos(torch.arange(n, dtype=torch.float32) * 1.3 + i).reshape(p.shape)
                    * 0.3)


class BagClassifier(nn.Module):
    def __init__(self, vocab, dim, classes):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)
        self.hidden = nn.Linear(dim, dim)
        self.act = nn.ReLU()
        self.out = nn.Linear(dim, classes)

    def forward(self, tokens):
        h = self.emb(tokens).mean(1)
        return self.out(self.act(self.hidden(h)))


vocab, classes = 12, 3
tokens = (torch.arange(40 * 5).reshape(40, 5) * 7 + 3) % vocab
labels = tokens.sum(1) % classes
model = BagClassifier(vocab, 8, classes)
deterministic_(model)
criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
opt = torch.optim.Adam(model.parameters(), lr=0.02)
for epoch in range(25):
    opt.zero_grad()
    logits = model(tokens)
    loss = criterion(logits, labels)
    loss.backward()
    opt.step()
    if epoch % 5 == 4:
        acc = (logits.argmax(1) == labels).float().mean()
        print(f"epoch {epoch} loss {loss.item():.5f} acc {acc.item():.3f}")
with torch.no_grad():
    print("padding row", model.emb.weight.detach()[0])
    print("probs", torch.softmax(model(tokens[:2]), dim=1))
