"""Noise on the model's grid: a synthetic study through the DICOM path against the training render.

For each ``--study SEED,SLICES,MATRIX`` (SLICES 0: the study's own count) the study is
rendered twice per path, with and without noise; the prepared images' difference is
the noise the model sees.  Printed: its sd in soft tissue (HU) for the training render
(``models.training.synthetic_source.render_fast_path``) and for the study at its own
resolution (as its DICOM files would be), with ``PreprocessSpec.band_limit`` at each
``--band-limit`` value.

    .venv/bin/python bench/bench_grid_noise.py --study 5000,160,256 --band-limit 0 --band-limit 0.75
"""

from __future__ import annotations

import argparse
import dataclasses

from models.preprocess import PreprocessSpec, prepare_stack
from models.synthetic.generator import render_study
from models.synthetic.spec import StudySpec, sample_study_spec
from models.training.synthetic_source import canonical_stack, render_fast_path
from models.volume import SliceStack


def stacks(spec: StudySpec, *, fast: bool) -> SliceStack:
    if fast:
        return render_fast_path(spec)[1]
    rendered = render_study(spec, with_masks=False)
    return canonical_stack(rendered.hu, rendered.geometry, description=str(spec.seed))


def soft_tissue_noise(spec: StudySpec, *, fast: bool, pp: PreprocessSpec) -> float:
    silent = dataclasses.replace(
        spec, acquisition=dataclasses.replace(spec.acquisition, noise_sd=0.0)
    )
    width = (pp.hu_window[1] - pp.hu_window[0]) / 2
    noisy = prepare_stack(stacks(spec, fast=fast), pp).image[0].numpy() * width
    clean = prepare_stack(stacks(silent, fast=fast), pp).image[0].numpy() * width
    soft = (clean > -100) & (clean < 150)
    return float((noisy - clean)[soft].std())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", action="append", required=True, help="SEED,SLICES,MATRIX")
    parser.add_argument("--band-limit", type=float, action="append", required=True)
    args = parser.parse_args()
    for text in args.study:
        seed, slices, matrix = (int(v) for v in text.split(","))
        spec = sample_study_spec(seed, n_slices=slices or None, matrix=matrix)
        g = spec.acquisition.geometry
        print(
            f"seed {seed}: {g.n_slices} x {g.rows}^2, pixel {g.pixel_spacing:.2f} mm, "
            f"slices {g.slice_spacing:.2f} mm, kernel {spec.acquisition.kernel_family}"
        )
        print(
            f"  training render: {soft_tissue_noise(spec, fast=True, pp=PreprocessSpec()):.1f} HU"
        )
        for band_limit in args.band_limit:
            pp = PreprocessSpec(band_limit=band_limit)
            noise = soft_tissue_noise(spec, fast=False, pp=pp)
            print(f"  own resolution, band_limit {band_limit}: {noise:.1f} HU")


if __name__ == "__main__":
    main()
