"""Training and evaluation data as torch Datasets, with a deterministic batch order.

Two sources:

- :class:`SynthDataset`: scenes of :mod:`iseg.synth`, generated on the fly from their seeds
  (``iseg.synth.sample_seed(split, data_seed, index)``), so nothing is stored and every index is
  the same scene on every machine.
- :class:`FolderDataset`: a ``plain`` or ADE20K-style folder listed by
  :func:`iseg.synth.folder_samples` (resized to one size when asked, since batches need one size),
  held in memory up to 1 GiB and decoded per access beyond.

Augmentation (a horizontal flip) is not drawn inside ``__getitem__``: :class:`BatchOrder`
decides, from ``(seed, epoch)`` alone, which samples step ``s`` sees and which are flipped.
That is what makes a resumed run see exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from iseg import synth
from iseg.errors import IsegError

__all__ = ["BatchOrder", "FolderDataset", "SynthDataset", "collate", "to_tensors"]


def to_tensors(image: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W, 3) u8 + (H, W) u8 → (3, H, W) uint8 and (H, W) int64 (255 stays the ignore value)."""
    image, labels = (a if a.flags.writeable else a.copy() for a in (np.ascontiguousarray(image), labels))
    img = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    return img, torch.from_numpy(np.ascontiguousarray(labels)).long()


class SynthDataset(Dataset):
    """``count`` synthetic scenes of ``split`` ("train"/"val"), sample ``i`` = seed ``sample_seed``.

    ``cache`` keeps generated samples in memory (``count·H·W·4`` bytes, uint8) for multi-epoch runs;
    it changes no result, only the time (scenes are a pure function of their seed).
    """

    def __init__(
        self, split: str, count: int, size: tuple[int, int], data_seed: int = 0, cache: bool = False
    ) -> None:
        if count < 1:
            raise IsegError(f"synthetic {split} split needs at least one sample, got {count}")
        synth.sample_seed(split, data_seed, 0)  # validates split and seed
        self.split, self.count, self.size, self.data_seed = split, int(count), tuple(size), int(data_seed)
        self.n_cls = synth.NUM_CLASSES
        self.class_names = synth.CLASS_NAMES
        self.class_colors = synth.CLASS_COLORS
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.count:
            raise IndexError(i)
        if self._cache is not None and i in self._cache:
            return to_tensors(*self._cache[i])
        img, lab = synth.make_sample(synth.sample_seed(self.split, self.data_seed, i), self.size)
        if self._cache is not None:
            self._cache[i] = (img, lab)
        return to_tensors(img, lab)


class FolderDataset(Dataset):
    """The samples of a dataset folder (``folder_samples``), optionally resized to ``size`` (H, W).

    Images are resized bilinearly and labels with nearest neighbour (labels are indices: never
    interpolate them). Without ``size`` the samples keep their own sizes (evaluate one by one).
    ``limit``: only the first ``limit`` samples (``--calib DIR:64`` decoded the whole split to keep 64).
    ``n_cls``: the model's classes; a label at or beyond them (other than the ignore value) is refused as its
    sample is decoded, naming the file, where it would otherwise end the loss in an IndexError traceback.
    Decoded samples (u8, 4 bytes a pixel with the label) are kept when the whole set fits ``CACHE_BYTES`` at
    ``size``; a larger one (ADE20K at 512 x 512: 21 GB) is decoded on each access instead of exhausting memory.
    """

    CACHE_BYTES = 1 << 30

    def __init__(
        self, path: str | os.PathLike[str], split: str | None = None, size: tuple[int, int] | None = None,
        limit: int | None = None, n_cls: int | None = None,
    ) -> None:
        self._list = synth.folder_samples(path, split)[:limit]
        self.n_cls = n_cls
        self.names = [s.name for s in self._list]
        self.size = tuple(size) if size is not None else None
        fits = size is not None and len(self._list) * size[0] * size[1] * 4 <= self.CACHE_BYTES
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if fits else None
        # a bad file is refused here, before any work, not at its first access hours into a run: decoded now
        # when kept, its headers read when decoded per access
        for i, s in enumerate(self._list):
            if self._cache is not None:
                self.sample(i)
            else:
                s.check()

    def __len__(self) -> int:
        return len(self._list)

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``i`` as ``(image (H, W, 3), labels (H, W))`` u8, at ``size`` when one was given."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        img, lab = self._list[i].load()
        if self.n_cls is not None:
            top = int(lab[lab != synth.IGNORE_INDEX].max(initial=0))
            if top >= self.n_cls:
                raise IsegError(f"annotation {self._list[i].labels} holds label {top}: the model has {self.n_cls} "
                                f"classes (0..{self.n_cls - 1}, {synth.IGNORE_INDEX} ignored)")
        if self.size is not None and img.shape[:2] != self.size:
            h, w = self.size
            img = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
            lab = np.asarray(Image.fromarray(lab).resize((w, h), Image.NEAREST))
        if self._cache is not None:
            self._cache[i] = (img, lab)
        return img, lab

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self._list):
            raise IndexError(i)
        return to_tensors(*self.sample(i))


@dataclass(frozen=True)
class BatchOrder:
    """Which samples (and flips) batch ``step`` holds: a pure function of ``(seed, step)``.

    Sample position ``p = step·batch + b`` is item ``perm_e[p mod n]`` of epoch ``e = p // n``,
    where ``perm_e`` and the flip bits come from ``numpy.random.default_rng([seed, e, ...])``.
    """

    n: int
    batch_size: int
    seed: int
    flip: bool = True

    def epoch_of(self, step: int) -> int:
        return step * self.batch_size // self.n

    def _epoch(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        perm = np.random.default_rng([self.seed, e, 0]).permutation(self.n)
        flips = np.random.default_rng([self.seed, e, 1]).random(self.n) < 0.5
        return perm, flips & self.flip

    def batch(self, step: int) -> list[tuple[int, bool]]:
        out: list[tuple[int, bool]] = []
        cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for p in range(step * self.batch_size, (step + 1) * self.batch_size):
            e, j = divmod(p, self.n)
            if e not in cache:
                cache[e] = self._epoch(e)
            perm, flips = cache[e]
            out.append((int(perm[j]), bool(flips[j])))
        return out


def collate(dataset: Dataset, picks: list[tuple[int, bool]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(index, flip)`` picks into uint8 images (B, 3, H, W) and int64 labels (B, H, W)."""
    imgs, labs = [], []
    for i, flip in picks:
        img, lab = dataset[i]
        if flip:
            img, lab = img.flip(-1), lab.flip(-1)
        imgs.append(img)
        labs.append(lab)
    if len({tuple(t.shape) for t in imgs}) != 1:
        raise IsegError("samples of one batch differ in size: give the dataset a common size")
    return torch.stack(imgs), torch.stack(labs)
