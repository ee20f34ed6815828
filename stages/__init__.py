"""The stages, by name: an explicit dict, in pipeline order. A new stage is a package here and one line below."""

from stages.clean.stage import CleanStage
from stages.decontam.stage import DecontamStage
from stages.dedup.stage import DedupStage
from stages.mix.stage import MixStage
from stages.synth.stage import SynthStage

STAGES = {
    "synth": SynthStage,
    "clean": CleanStage,
    "dedup": DedupStage,
    "decontam": DecontamStage,
    "mix": MixStage,
}
