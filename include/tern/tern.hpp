#pragma once
/// @file tern.hpp
/// @brief Umbrella header: everything tern offers.
///
/// tern trains and deploys small neural networks with 1.58-bit (ternary) weights. Layers are
/// templates over a quantization policy (fp32, fp16, absmean_ternary, absmedian_ternary) and an
/// activation bit width; a model definition written once instantiates every precision.

#include "version.hpp"
#include "error.hpp"
#include "tensor.hpp"
#include "policy.hpp"
#include "random.hpp"
#include "threads.hpp"
#include "parameter.hpp"
#include "quantize.hpp"
#include "kernels/fp16.hpp"
#include "kernels/gemm.hpp"
#include "layers/layer.hpp"
#include "layers/linear.hpp"
#include "layers/activations.hpp"
#include "layers/norm.hpp"
#include "layers/dropout.hpp"
#include "layers/flatten.hpp"
#include "layers/residual.hpp"
#include "layers/pinned.hpp"
#include "sequential.hpp"
#include "loss.hpp"
#include "optim/sgd.hpp"
#include "optim/adam.hpp"
#include "optim/clip.hpp"
#include "optim/schedule.hpp"
#include "io/safetensors.hpp"
#include "checkpoint.hpp"
#include "continual.hpp"
#include "data/idx.hpp"
#include "data/batches.hpp"
#include "data/cifar.hpp"
#include "train/progress.hpp"
#include "train/metrics.hpp"
#include "train/csv_log.hpp"
#include "train/classifier.hpp"
