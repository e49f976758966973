"""The sections of the configuration tree, one per component of the method.

Every field has a default (the values of the paper and of the authors' public code,
see ``docs/METHOD.md``), a one-line help text, and optional bounds or choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from clusteringsdf_core.config.lengths import REFERENCE_SIDE_M
from clusteringsdf_core.config.schema import ConfigError, Section, param


@dataclass(frozen=True)
class ModelConfig(Section):
    """The object-compositional SDF network and its colour network."""

    name: ClassVar[str] = "model"

    num_channels: int = param(50, "SDF channels c; channel 0 is the background/stuff channel, "
                              "scene SDF = min over channels (public code: 50)", min=2)
    encoding: str = param("hashgrid", "input encoding of points",
                          choices=("hashgrid", "densegrid", "triplane", "none"))
    grid_levels: int = param(16, "resolution levels of the grid encoding", min=1)
    grid_features_per_level: int = param(2, "features per level of the grid encoding", min=1)
    grid_base_resolution: int = param(16, "coarsest grid resolution (cells per side)", min=2)
    grid_max_resolution: int = param(2048, "finest grid resolution (cells per side)", min=2)
    grid_log2_hashmap_size: int = param(19, "log2 of the hash table size per level", min=8, max=26)
    positional_frequencies: int = param(6, "frequencies of the positional encoding "
                                        "concatenated to the grid features (0 = none)", min=0)
    sdf_hidden: list[int] = param([256, 256], "hidden widths of the SDF MLP", min=1)
    activation: str = param("softplus", "hidden activation of both MLPs (softplus(beta=100) is "
                            "the public code's; relu/silu are ~7x faster on CPU)",
                            choices=("softplus", "relu", "silu"))
    softplus_beta: float = param(100.0, "beta of the softplus activation", min=0.0, min_exclusive=True)
    weight_norm: bool = param(True, "weight normalisation of the MLP layers")
    feature_dim: int = param(256, "geometry feature width passed to the colour network", min=0)
    color_hidden: list[int] = param([256, 256], "hidden widths of the colour MLP", min=1)
    color_uses_normal: bool = param(True, "condition the colour network on the SDF normal (needs "
                                    "SDF gradients at every rendered sample)")
    sdf_parametrization: str = param("direct", "direct: the network outputs the c SDFs (paper); "
                                     "shared_geometry: it outputs a scene SDF s and channel offsets g, "
                                     "d_k = s + g_k - min_j g_j (the same function class; geometry "
                                     "learns through s and every channel stays close to the surface, "
                                     "so clustering gradients do not vanish)",
                                     choices=("direct", "shared_geometry"))
    init_channel_gap: float = param(0.05, "shared_geometry: initial offset of the object channels "
                                    "behind the background channel, normalised units", min=0.0)
    init_offset_slope: float = param(0.0, "shared_geometry: object channel k starts with an offset "
                                     "growing by this much per normalised unit of distance from a "
                                     "random centre c_k (a Voronoi-like initial partition that breaks "
                                     "the symmetry between object channels, as the spheres of the "
                                     "direct parametrisation do)", min=0.0)
    init_seeds_observed: float = param(0.0, "share of the object channels whose centre c_k (sphere "
                                       "or offset ramp) is placed on observed objects instead of "
                                       "at random in the scene box: farthest-point samples of one "
                                       "back-projected point per labelled 2D segment of the frames "
                                       "known at the first step; online, later frames add centres "
                                       "as init_late_seeds says (0: none)",
                                       min=0.0, max=1.0)
    init_late_seeds: str = param("share", "online, which segments of frames after the first "
                                 "placement get a channel centre: share (those farther than "
                                 "init_seed_spacing_m from every placed centre, while the share "
                                 "init_seeds_observed is not used up), spacing (the same, on any "
                                 "object channel not placed yet), unowned (as spacing, and only "
                                 "where the background channel owns the segment's point: no object "
                                 "channel holds that surface yet)",
                                 choices=("share", "spacing", "unowned"))
    init_seed_spacing_m: float = param(0.5, "observed channel centres (one candidate per labelled 2D "
                                       "segment) are at least this far apart (metres): "
                                       "farthest-point sampling stops below it, and online a new "
                                       "frame adds a centre for a segment farther than this from "
                                       "every placed one", min=0.0, scene_length=True)
    geometric_init: bool = param(True, "geometric initialisation: channel 0 an inverted room "
                                 "box, object channels small spheres")
    init_background_radius: float = param(1.0, "size of the initial inverted background box "
                                          "relative to the scene bounds", min=0.0, min_exclusive=True)
    init_object_radius: float = param(0.1, "radius of the initial object spheres, normalised "
                                      "scene units", min=0.0, min_exclusive=True)
    beta_init: float = param(0.1, "initial beta of the Laplace density (VolSDF)", min=0.0,
                             min_exclusive=True)
    beta_min: float = param(1.0e-4, "lower bound of the learnable beta", min=0.0, min_exclusive=True)

    def validate(self) -> None:
        if self.grid_max_resolution < self.grid_base_resolution:
            raise ConfigError("model.grid_max_resolution",
                              f"must be >= model.grid_base_resolution ({self.grid_base_resolution})")
        if self.beta_init < self.beta_min:
            raise ConfigError("model.beta_init", f"must be >= model.beta_min ({self.beta_min})")


@dataclass(frozen=True)
class RenderConfig(Section):
    """Rays, samplers and volume rendering."""

    name: ClassVar[str] = "render"

    sampler: str = param("importance", "ray sampler: hierarchical importance sampling from a "
                         "coarse pass (stands in for VolSDF's error-bounded sampler), uniform, or "
                         "depth-guided (samples around the measured depth; importance where none)",
                         choices=("importance", "uniform", "depth_guided"))
    num_samples: int = param(64, "samples per ray that are rendered (fine / importance samples)", min=1)
    num_samples_coarse: int = param(64, "coarse samples per ray evaluated without gradients to "
                                    "place the importance samples", min=1)
    num_samples_extra: int = param(32, "extra uniform samples per ray added to the rendered set "
                                   "(free space in front of the depth with depth_guided)", min=0)
    depth_guided_samples: int = param(16, "samples in the band around the measured depth", min=1)
    depth_guided_band_m: float = param(0.1, "half-width of the depth band, metres", min=0.0,
                                       min_exclusive=True, scene_length=True)
    near_m: float = param(0.05, "nearest sample distance along a ray, metres", min=0.0, scene_length=True)
    far_m: float = param(12.0, "farthest sample distance along a ray, metres (rays stop at the map's "
                         "bounds or here, whichever is nearer)", min=0.0,
                         min_exclusive=True, scene_length=True)
    bounds_padding_m: float = param(0.1, "padding added around the scene bounds, metres", min=0.0, scene_length=True)
    eval_chunk_rays: int = param(4096, "rays rendered per chunk at evaluation", min=1)

    def validate(self) -> None:
        if self.far_m <= self.near_m:
            raise ConfigError("render.far_m", f"must be > render.near_m ({self.near_m})")


@dataclass(frozen=True)
class LossConfig(Section):
    """Loss weights. Names follow the paper: l1..l5 are lambda_diff, lambda_onehot,
    lambda_reg, lambda_bg, lambda_fg."""

    name: ClassVar[str] = "loss"
    # normal / smooth: weights of normal-prior and smoothness losses that no reader
    # could feed (no dataset has monocular normal priors) and the trainer never added.
    retired: ClassVar[tuple[str, ...]] = ("normal", "smooth")

    definition: str = param("paper", "clustering/fg-bg loss definitions: as in the paper, or "
                            "as in the authors' public code", choices=("paper", "public_code"))
    rgb: float = param(1.0, "weight of the RGB L1 loss", min=0.0)
    depth: float = param(0.0, "weight of the depth loss (0 in the public code; sensor depth "
                         "makes it worth using)", min=0.0)
    sdf: float = param(0.0, "weight of the SDF loss from measured depth (projective distance to "
                       "the depth surface inside the truncation band, no negative SDF in front of "
                       "it); RGB-D only", min=0.0)
    sdf_truncation_m: float = param(0.1, "truncation band of the SDF loss, metres", min=0.0,
                                    min_exclusive=True, scene_length=True)
    eikonal: float = param(0.1, "weight of the eikonal loss", min=0.0)
    eikonal_method: str = param("autograd_per_channel", "how SDF gradients for the eikonal term "
                                "are taken: exact per channel (the public code's; here in three "
                                "forward-mode passes, not one reverse pass per channel), "
                                "autograd of the scene SDF only, or finite differences",
                                choices=("autograd_per_channel", "autograd_scene", "finite_difference"))
    finite_difference_step: float = param(1.0e-3, "step of finite differences, normalised scene "
                                          "units", min=0.0, min_exclusive=True)
    eikonal_points: int = param(1024, "random points in the scene bounds added to the ray samples "
                                "for the eikonal loss", min=0)
    labels_move_geometry: bool = param(True, "whether the label losses (clustering, fg-bg, "
                                       "semantic, opacity) see the scene SDF as trainable; false "
                                       "(shared_geometry only) renders their opacities from the "
                                       "detached scene SDF plus the channel offsets, so 1e4 x L_reg "
                                       "cannot erode surfaces directly (their gradients still reach "
                                       "the grid and MLP weights that the SDF shares with the offsets)")
    label_beta_min_m: float = param(0.0, "with labels_move_geometry false: lower bound of the "
                                    "Laplace beta used for the label opacities, metres (keeps their "
                                    "gradients alive once the geometry's beta has become sharp)",
                                    min=0.0, scene_length=True)
    softmax_temperature: float = param(1.0, "O^s = softmax(O / temperature) over channels; the paper "
                                       "uses 1", min=0.0, min_exclusive=True)
    lambda_diff: float = param(20.0, "l1: weight of L_diff (cluster centres apart)", min=0.0)
    lambda_onehot: float = param(0.5, "l2: weight of L_onehot", min=0.0)
    onehot_target: str = param("any", "the vertex L_onehot pulls a foreground ray to: the argmax "
                               "over all channels (paper; it pulls rays still in the background "
                               "into it, so with sparse labels whole objects stay there), over "
                               "the object channels only (objects of one view can be pulled "
                               "into one channel), 'settled': the paper's target for rays "
                               "already on an object channel, rays still in the background left "
                               "alone, or 'distinct': rays in the background go to "
                               "their label's object channel, distinct for the labels of a view",
                               choices=("any", "settled", "object", "distinct"))
    onehot_start_fraction: float = param(0.0, "fraction of trainer.iterations after which L_onehot "
                                         "switches on (paper: from the start). It sharpens the "
                                         "clusters once they have formed; on from the start it "
                                         "holds objects that are still in the background there",
                                         min=0.0, max=1.0)
    lambda_reg: float = param(10000.0, "l3: weight of L_reg (slows entropy reduction)", min=0.0)
    reg_reference_channels: int = param(0, "when > 0, lambda_reg is meant for this many channels and "
                                        "is scaled by (num_channels / this)^2 for the model's count: "
                                        "the variance L_reg measures shrinks like 1/c^2, so the "
                                        "paper's 1e4 (tuned at 50 channels) is ~40x stronger at 8 "
                                        "channels and merged neighbouring objects; 0 = unscaled",
                                        min=0)
    lambda_bg: float = param(0.2, "l4: weight of the background term of L_fg-bg", min=0.0)
    lambda_fg: float = param(0.1, "l5: weight of the foreground term of L_fg-bg", min=0.0)
    lambda_sem: float = param(0.15, "weight of L_sem (semantic mode)", min=0.0)
    semantic_clustering_scale: float = param(1.5, "scale of the clustering term in semantic mode "
                                             "(public code)", min=0.0)
    lambda_cross_view: float = param(0.0, "weight of L_cross_view (instance mode; disabled in "
                                     "both public configs)", min=0.0)
    lambda_opacity_label: float = param(0.0, "weight of ObjectSDF++'s opacity loss against the "
                                        "2D labels taken as consistent ids (baselines only)", min=0.0)
    lambda_violation: float = param(0.0, "weight of ObjectSDF++'s object-distinction "
                                    "(violation) loss", min=0.0)
    violation_start_fraction: float = param(0.5, "fraction of training after which the violation "
                                            "loss switches on (public code: after 100 of 200 "
                                            "epochs)", min=0.0, max=1.0)


@dataclass(frozen=True)
class SamplingConfig(Section):
    """Rays drawn per iteration."""

    name: ClassVar[str] = "sampling"

    rays_per_batch: int = param(1024, "rays per iteration (1 image per iteration)", min=1)
    images_per_batch: int = param(1, "views whose rays make one iteration", min=1)
    label_comprehensive: bool = param(True, "every label of the view gets at least one ray (the "
                                      "rest uniformly); false: all rays uniformly at random")
    per_label_share: float = param(0.0, "extra rays per label as a share of the random rays "
                                   "(public code draws ceil(share x random rays) per label)",
                                   min=0.0, max=1.0)
    cross_view_views: int = param(4, "extra views drawn for L_cross_view", min=0)
    cross_view_rays: int = param(64, "rays per extra view for L_cross_view", min=1)


@dataclass(frozen=True)
class KeyframeConfig(Section):
    """Key frames: offline selection and the online buffer."""

    name: ClassVar[str] = "keyframes"

    top_fraction: float = param(0.1, "share of frames with the most distinct labels that are key "
                                "frames (supplementary 1.2)", min=0.0, max=1.0, min_exclusive=True)
    replace_empty: bool = param(True, "a drawn frame with no label is replaced by a random key frame")
    swap_probability: float = param(0.0, "chance that any drawn frame is swapped for a key frame "
                                    "(public code: 0.2)", min=0.0, max=1.0)
    buffer_size: int = param(300, "frames kept by the online buffer", min=1)
    min_translation_m: float = param(0.05, "online: a frame is kept if the camera moved this far "
                                     "since the last kept frame, metres", min=0.0, scene_length=True)
    min_rotation_deg: float = param(5.0, "online: ... or turned this much, degrees", min=0.0)
    eviction: str = param("fewest_labels", "online: which frame leaves a full buffer",
                          choices=("fewest_labels", "oldest", "most_redundant"))


@dataclass(frozen=True)
class TrainerConfig(Section):
    """Optimisation, mode, device, logging and checkpoints."""

    name: ClassVar[str] = "trainer"

    mode: str = param("instance", "instance mode (view-inconsistent instance ids) or semantic mode "
                      "(channel = class id)", choices=("instance", "semantic"))
    iterations: int = param(120000, "training iterations (paper: ~120k); online, the length of the "
                            "learning-rate schedule (see trainer.online_schedule); late-starting "
                            "loss terms start at their fraction of it, offline and online", min=0)
    online_schedule: str = param("rewind", "online schedule progress: rewind = each new key frame "
                                 "sets the progress back by its share of the key frames (the "
                                 "progress is how trained the current key frames are: a burst of "
                                 "new views is learned at a high rate again); fixed = iteration / "
                                 "trainer.iterations, as offline", choices=("rewind", "fixed"))
    lr: float = param(5.0e-4, "Adam learning rate of the networks", min=0.0, min_exclusive=True)
    grid_lr_factor: float = param(20.0, "learning-rate multiplier of the grid encoding", min=0.0,
                                  min_exclusive=True)
    adam_betas: list[float] = param([0.9, 0.99], "Adam betas (beta1, beta2) of the optimiser", min=0.0, max=1.0)
    adam_eps: float = param(1.0e-15, "Adam epsilon of the optimiser", min=0.0, min_exclusive=True)
    lr_final_factor: float = param(0.1, "exponential decay of the learning rate down to this "
                                   "factor at the last iteration (online too, then held)", min=0.0, max=1.0,
                                   min_exclusive=True)
    device: str = param("auto", "torch device: auto (CUDA when present), cpu, cuda, cuda:N")
    seed: int = param(0, "random seed of initialisation and sampling", min=0)
    num_threads: int = param(0, "CPU threads for torch (0 = torch's default); the online engine lends half "
                             "of them to a running extraction", min=0)
    log_every: int = param(100, "iterations between loss log lines and loss readings (the "
                                "progress bar, the engine's stats): reading a loss waits for the device", min=1)
    checkpoint_every: int = param(5000, "iterations between checkpoints (0 = only at the end)", min=0)
    progress_bar: bool = param(True, "show a progress bar on a terminal")

    def validate(self) -> None:
        if len(self.adam_betas) != 2:
            raise ConfigError("trainer.adam_betas", f"expected two values, got {self.adam_betas}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError("trainer.device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass(frozen=True)
class ExtractConfig(Section):
    """Meshes and objects from the trained field."""

    name: ClassVar[str] = "extract"

    resolution: int = param(256, "marching-cubes grid cells along the longest side of the "
                            "scene bounds (public code: 256)", min=8)
    live_resolution: int = param(64, "grid cells along the longest side for the periodic extractions "
                                 "while training (the mapping node's live /objects; 8x fewer network "
                                 "queries at half the resolution); saved maps use `resolution`", min=8)
    min_component_faces: int = param(200, "connected mesh fragments with fewer faces are removed "
                                     "(at `resolution`; scaled by the squared resolution ratio)",
                                     min=0)
    min_object_faces: int = param(500, "channels whose mesh has fewer faces are dropped (at "
                                  "`resolution`, scaled like min_component_faces)", min=0)
    object_mesh: str = param("closed", "what each object's mesh is: closed = the boundary of the "
                             "object's solid (grid cells inside the scene surface where its channel's "
                             "SDF is the smallest, within the bounds of its shell), i.e. the surface it owns plus contact faces where "
                             "it meets another object, floor or wall; watertight where the solid "
                             "stays inside the grid, volume from the mesh; shell = only the visible "
                             "scene surface it owns (open where it touches others). The scene "
                             "mesh coloured by object and the 3D metrics always use the shells",
                             choices=("closed", "shell"))
    split_channels: bool = param(False, "one object per spatially separate part of a channel's "
                                 "surface instead of one per channel: the clustering only keeps "
                                 "objects seen together in a view in distinct channels, so objects "
                                 "never seen side by side may share one (the paper: one object per "
                                 "channel)")
    split_gap_m: float = param(0.1, "with split_channels: surface components of one channel closer "
                               "than this (and than two grid cells) are one object, metres",
                               min=0.0, scene_length=True)
    match_iou: float = param(0.2, "3D box IoU above which a new extraction keeps the id of a "
                             "previous object", min=0.0, max=1.0)
    confirm_after: int = param(2, "while training, an object gets an id (is published) once it "
                               "has been matched in this many consecutive extractions, so "
                               "fragments that flicker between extractions never reach planners "
                               "(1 = at once; saved maps and offline extractions confirm at once)",
                               min=1)
    drop_after: int = param(2, "a published object missing from this many consecutive "
                            "extractions is dropped; until then it stays with its last geometry "
                            "(1 = dropped at the first miss)", min=1)
    export_format: str = param("ply", "mesh file format", choices=("ply", "glb", "obj"))


@dataclass(frozen=True)
class DataConfig(Section):
    """How frames are read and scaled before training."""

    name: ClassVar[str] = "data"

    image_width: int = param(320, "training image width, pixels (frames are resized)", min=8)
    image_height: int = param(240, "training image height, pixels", min=8)
    depth_min_m: float = param(0.1, "depth below this is invalid, metres", min=0.0)
    depth_max_m: float = param(10.0, "depth above this is invalid, metres", min=0.0,
                               min_exclusive=True)
    max_frames: int = param(0, "use at most this many training frames (0 = all)", min=0)
    length_scale: float = param(0.0, "factor on the lengths that follow the scene's size (init_seed_"
                                "spacing_m, render's band, near, far and padding, the SDF truncation, "
                                "label_beta_min_m, the key frames' min_translation_m, split_gap_m): "
                                "0 = derived when a model is made, min(1, largest side of the scene "
                                "bounds / data.reference_side_m), at least 0.05; 1 = as written. A "
                                "trainer's saved configuration holds the lengths it used, with 1 here",
                                min=0.0)
    reference_side_m: float = param(REFERENCE_SIDE_M, "with length_scale 0: scenes whose bounds are at least this "
                                    "long on their largest side (rooms, which the lengths are set "
                                    "for) use the lengths as written; smaller ones (a tabletop) "
                                    "scale them by their side over this", min=0.0, min_exclusive=True)

    def validate(self) -> None:
        if self.depth_max_m <= self.depth_min_m:
            raise ConfigError("data.depth_max_m", f"must be > data.depth_min_m ({self.depth_min_m})")


SECTIONS: dict[str, type[Section]] = {
    cls.name: cls
    for cls in (ModelConfig, RenderConfig, LossConfig, SamplingConfig, KeyframeConfig,
                TrainerConfig, ExtractConfig, DataConfig)
}
