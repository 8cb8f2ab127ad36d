#include "voting.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace pyinspect {
namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

// Shortest readable form of a number for messages ("1e-40", "0.5", "nan"), unlike to_string.
std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

}  // namespace

VoteOutput vote(const float* scores, std::int64_t n, std::int64_t k,
                const std::int32_t* class_texture, std::int64_t n_texture,
                const bool* class_defective, std::int64_t n_defective, bool is_logits,
                double threshold) {
    if (n < 1) fail("scores need at least one patch (row), got " + std::to_string(n));
    if (k < 1) fail("scores need at least one class (column), got " + std::to_string(k));
    if (n_texture != k || n_defective != k) {
        fail("scores have " + std::to_string(k) + " classes but the class table has " +
             std::to_string(n_texture) + " textures and " + std::to_string(n_defective) +
             " defective flags");
    }
    if (std::isnan(threshold) || threshold > 1.0) {
        fail("threshold must be in [0, 1] (or negative for argmax), got " + num(threshold));
    }
    std::int32_t n_textures = 0;
    for (std::int64_t c = 0; c < k; ++c) {
        if (class_texture[c] < 0 || class_texture[c] >= k) {
            fail("class " + std::to_string(c) + " has texture id " +
                 std::to_string(class_texture[c]) + "; ids must be in [0, " + std::to_string(k) +
                 ")");
        }
        n_textures = std::max(n_textures, class_texture[c] + 1);
    }
    for (std::int64_t i = 0; i < n * k; ++i) {
        if (!std::isfinite(scores[i])) {
            fail("score of patch " + std::to_string(i / k) + ", class " + std::to_string(i % k) +
                 " is " + num(scores[i]) + "; scores must be finite");
        }
    }

    VoteOutput r;
    const auto un = static_cast<std::size_t>(n);
    r.patch_class.resize(un);
    r.patch_score.resize(un);
    r.patch_defect_prob.resize(un);
    r.patch_defective.resize(un);
    r.texture_votes.assign(static_cast<std::size_t>(n_textures), 0);
    std::vector<double> texture_mass(static_cast<std::size_t>(n_textures), 0.0);
    std::vector<double> prob(static_cast<std::size_t>(k));

    for (std::int64_t i = 0; i < n; ++i) {
        const float* row = scores + i * k;
        std::int64_t best = 0;
        for (std::int64_t c = 1; c < k; ++c) {
            if (row[c] > row[best]) best = c;  // strict: ties keep the lower class id
        }
        if (is_logits) {
            const double top = row[best];
            double sum = 0.0;
            for (std::int64_t c = 0; c < k; ++c) {
                prob[c] = std::exp(static_cast<double>(row[c]) - top);
                sum += prob[c];
            }
            for (std::int64_t c = 0; c < k; ++c) prob[c] /= sum;
        } else {
            for (std::int64_t c = 0; c < k; ++c) prob[c] = row[c];
        }
        double defect = 0.0;
        for (std::int64_t c = 0; c < k; ++c) {
            if (class_defective[c]) defect += prob[c];
            texture_mass[static_cast<std::size_t>(class_texture[c])] += prob[c];
        }
        // Compared in float32, as the reported patch_defect_prob (and NumPy) would compare it.
        const bool is_defective = threshold < 0.0
                                      ? class_defective[best]
                                      : static_cast<float>(defect) >= static_cast<float>(threshold);
        r.patch_class[i] = static_cast<std::int32_t>(best);
        r.patch_score[i] = static_cast<float>(prob[best]);
        r.patch_defect_prob[i] = static_cast<float>(defect);
        r.patch_defective[i] = is_defective ? 1 : 0;
        r.defective = r.defective || is_defective;
        ++r.texture_votes[static_cast<std::size_t>(class_texture[best])];
    }

    std::int32_t winner = 0;
    for (std::int32_t t = 1; t < n_textures; ++t) {
        const auto ut = static_cast<std::size_t>(t), uw = static_cast<std::size_t>(winner);
        if (r.texture_votes[ut] > r.texture_votes[uw] ||
            (r.texture_votes[ut] == r.texture_votes[uw] && texture_mass[ut] > texture_mass[uw])) {
            winner = t;  // equal votes and equal mass keep the lower id
        }
    }
    r.texture = winner;
    return r;
}

}  // namespace pyinspect
