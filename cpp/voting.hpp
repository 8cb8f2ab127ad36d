// Patch decisions -> image decision (paper §4): each patch's argmax class gives its texture and
// whether it is defective; the image texture is the majority texture, the image is defective when
// any patch is. No Python in here; invalid input throws std::invalid_argument.
#pragma once

#include <cstdint>
#include <vector>

namespace pyinspect {

struct VoteOutput {
    std::vector<std::int32_t> patch_class;  // argmax class per patch
    std::vector<float> patch_score;         // probability of that class
    std::vector<float> patch_defect_prob;   // summed probability of the defective classes
    std::vector<std::uint8_t> patch_defective;
    std::int32_t texture = 0;
    bool defective = false;
    std::vector<std::int32_t> texture_votes;  // patches per texture id, size max(class_texture)+1
};

// Wall-clock milliseconds of one whole-frame run (tile -> infer -> vote), as the runners report
// them next to their VoteOutput.
struct StageTimes {
    double tile_ms = 0, infer_ms = 0, vote_ms = 0, total_ms = 0;
};

// scores: row-major [n, k] (logits when is_logits, else probabilities used as given).
// class_texture[c] in [0, k) is the texture id of class c; class_defective[c] marks defect
// classes.
//
// Rules:
//  * softmax is the stable one (the row maximum is subtracted before exp, sums in double).
//  * argmax ties go to the lower class id.
//  * threshold < 0: a patch is defective iff its argmax class is defective;
//    threshold in [0, 1]: iff patch_defect_prob >= threshold.
//  * texture = the texture with the most patch votes. Tie rule: among the tied textures the one
//    with the larger summed probability (over its classes and over all patches) wins; if that is
//    tied too, the lower texture id wins.
// Throws for n < 1, k < 1, a class table of a different length than k, a texture id outside
// [0, k), a threshold above 1 or NaN, or any NaN/inf score (the message names patch and class).
VoteOutput vote(const float* scores, std::int64_t n, std::int64_t k,
                const std::int32_t* class_texture, std::int64_t n_texture,
                const bool* class_defective, std::int64_t n_defective, bool is_logits,
                double threshold);

}  // namespace pyinspect
