// Autograd of hienet::convolution, for every device (TORCH_LIBRARY_IMPL(hienet, Autograd)).
//
// F(x, Y, w) = convolution, B(g, x, Y, w) = convolution_backward = (B_x, B_Y, B_w). F is
// linear in each of x, Y, w, so the derivatives of B are again F and B with one argument
// replaced by an incoming gradient (gg_x, gg_Y, gg_w):
//
//   d/dg = F(gg_x, Y, w) + F(x, gg_Y, w) + F(x, Y, gg_w)
//   d/dx = B_x(g, x, gg_Y, w) + B_x(g, x, Y, gg_w)
//   d/dY = B_Y(g, gg_x, Y, w) + B_Y(g, x, Y, gg_w)
//   d/dw = B_w(g, gg_x, Y, w) + B_w(g, x, gg_Y, w)
//
// Both functions call the operators through the dispatcher, so derivatives of any order work
// (training on forces needs the second) and each device only implements F and B.
#include "convolution.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace hienet {
namespace ops {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_convolution(const at::Tensor &x, const at::Tensor &sh, const at::Tensor &weight,
                            const at::Tensor &edge_index, const at::Tensor &paths,
                            const at::Tensor &coefficients, int64_t out_dim)
{
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("hienet::convolution", "")
                       .typed<decltype(convolution_cpu)>();
  return op.call(x, sh, weight, edge_index, paths, coefficients, out_dim);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> call_convolution_backward(
    const at::Tensor &grad_out, const at::Tensor &x, const at::Tensor &sh,
    const at::Tensor &weight, const at::Tensor &edge_index, const at::Tensor &paths,
    const at::Tensor &coefficients, std::array<bool, 3> mask)
{
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("hienet::convolution_backward", "")
                       .typed<decltype(convolution_backward_cpu)>();
  return op.call(grad_out, x, sh, weight, edge_index, paths, coefficients, mask);
}

void accumulate(at::Tensor &sum, const at::Tensor &term)
{
  if (!term.defined()) return;
  sum = sum.defined() ? sum + term : term;
}

void check_constants(const at::Tensor &paths, const at::Tensor &coefficients)
{
  TORCH_CHECK(!paths.requires_grad() && !coefficients.requires_grad(),
              "hienet::convolution: paths and coefficients are constants of the model and "
              "cannot require gradients");
}

class ConvolutionFunction : public torch::autograd::Function<ConvolutionFunction> {
 public:
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, const at::Tensor &sh,
                            const at::Tensor &weight, const at::Tensor &edge_index,
                            const at::Tensor &paths, const at::Tensor &coefficients,
                            int64_t out_dim)
  {
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({x, sh, weight, edge_index, paths, coefficients});
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_convolution(x, sh, weight, edge_index, paths, coefficients, out_dim);
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads)
  {
    const at::Tensor &grad_out = grads[0];
    if (!grad_out.defined()) return variable_list(7);
    const auto s = ctx->get_saved_variables();
    const std::array<bool, 3> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                   ctx->needs_input_grad(2)};
    auto [gx, gsh, gw] = call_convolution_backward(grad_out, s[0], s[1], s[2], s[3], s[4], s[5], mask);
    return {gx, gsh, gw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class ConvolutionBackwardFunction
    : public torch::autograd::Function<ConvolutionBackwardFunction> {
 public:
  static variable_list forward(AutogradContext *ctx, const at::Tensor &grad_out,
                               const at::Tensor &x, const at::Tensor &sh,
                               const at::Tensor &weight, const at::Tensor &edge_index,
                               const at::Tensor &paths, const at::Tensor &coefficients,
                               std::array<bool, 3> mask)
  {
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({grad_out, x, sh, weight, edge_index, paths, coefficients});
    ctx->saved_data["mask"] = std::vector<bool>(mask.begin(), mask.end());
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [gx, gsh, gw] =
        call_convolution_backward(grad_out, x, sh, weight, edge_index, paths, coefficients, mask);
    // autograd cannot wrap undefined outputs: empty stand-ins, dropped again by the caller
    auto defined = [&](const at::Tensor &t) { return t.defined() ? t : at::empty({0}, x.options()); };
    return {defined(gx), defined(gsh), defined(gw)};
  }

  static variable_list backward(AutogradContext *ctx, variable_list gg)
  {
    const auto s = ctx->get_saved_variables();
    const at::Tensor &g = s[0], &x = s[1], &sh = s[2], &w = s[3], &ei = s[4], &paths = s[5],
                     &coeff = s[6];
    const bool need_g = ctx->needs_input_grad(0), need_x = ctx->needs_input_grad(1),
               need_sh = ctx->needs_input_grad(2), need_w = ctx->needs_input_grad(3);
    const auto computed = ctx->saved_data["mask"].toBoolList();
    const at::Tensor gg_x = computed[0] ? gg[0] : at::Tensor();
    const at::Tensor gg_sh = computed[1] ? gg[1] : at::Tensor();
    const at::Tensor gg_w = computed[2] ? gg[2] : at::Tensor();
    const int64_t out_dim = g.size(1);
    at::Tensor d_g, d_x, d_sh, d_w;
    if (gg_x.defined()) {
      if (need_g) accumulate(d_g, call_convolution(gg_x, sh, w, ei, paths, coeff, out_dim));
      if (need_sh || need_w) {
        auto r = call_convolution_backward(g, gg_x, sh, w, ei, paths, coeff, {false, need_sh, need_w});
        accumulate(d_sh, std::get<1>(r));
        accumulate(d_w, std::get<2>(r));
      }
    }
    if (gg_sh.defined()) {
      if (need_g) accumulate(d_g, call_convolution(x, gg_sh, w, ei, paths, coeff, out_dim));
      if (need_x || need_w) {
        auto r = call_convolution_backward(g, x, gg_sh, w, ei, paths, coeff, {need_x, false, need_w});
        accumulate(d_x, std::get<0>(r));
        accumulate(d_w, std::get<2>(r));
      }
    }
    if (gg_w.defined()) {
      if (need_g) accumulate(d_g, call_convolution(x, sh, gg_w, ei, paths, coeff, out_dim));
      if (need_x || need_sh) {
        auto r = call_convolution_backward(g, x, sh, gg_w, ei, paths, coeff, {need_x, need_sh, false});
        accumulate(d_x, std::get<0>(r));
        accumulate(d_sh, std::get<1>(r));
      }
    }
    return {d_g, d_x, d_sh, d_w, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// convolution_radial: weight = hidden @ linear is made in the forward and again in the
// backward, so that only hidden (E x H) is kept between the two.
class ConvolutionRadialFunction : public torch::autograd::Function<ConvolutionRadialFunction> {
 public:
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, const at::Tensor &sh,
                            const at::Tensor &hidden, const at::Tensor &linear,
                            const at::Tensor &edge_index, const at::Tensor &paths,
                            const at::Tensor &coefficients, int64_t out_dim)
  {
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({x, sh, hidden, linear, edge_index, paths, coefficients});
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_convolution(x, sh, at::mm(hidden, linear), edge_index, paths, coefficients, out_dim);
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads)
  {
    const at::Tensor &grad_out = grads[0];
    if (!grad_out.defined()) return variable_list(8);
    const auto s = ctx->get_saved_variables();
    const at::Tensor &x = s[0], &sh = s[1], &hidden = s[2], &linear = s[3];
    const bool need_hidden = ctx->needs_input_grad(2), need_linear = ctx->needs_input_grad(3);
    const std::array<bool, 3> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                   need_hidden || need_linear};
    // differentiable when the engine builds a graph of the backward (training on forces)
    at::Tensor weight = at::mm(hidden, linear);
    auto [gx, gsh, gw] = call_convolution_backward(grad_out, x, sh, weight, s[4], s[5], s[6], mask);
    weight.reset();
    at::Tensor g_hidden = need_hidden && gw.defined() ? at::mm(gw, linear.t()) : at::Tensor();
    at::Tensor g_linear = need_linear && gw.defined() ? at::mm(hidden.t(), gw) : at::Tensor();
    return {gx, gsh, g_hidden, g_linear, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor convolution_autograd(const at::Tensor &x, const at::Tensor &sh,
                                const at::Tensor &weight, const at::Tensor &edge_index,
                                const at::Tensor &paths, const at::Tensor &coefficients,
                                int64_t out_dim)
{
  check_constants(paths, coefficients);
  return ConvolutionFunction::apply(x, sh, weight, edge_index, paths, coefficients, out_dim);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> convolution_backward_autograd(
    const at::Tensor &grad_out, const at::Tensor &x, const at::Tensor &sh,
    const at::Tensor &weight, const at::Tensor &edge_index, const at::Tensor &paths,
    const at::Tensor &coefficients, std::array<bool, 3> mask)
{
  check_constants(paths, coefficients);
  auto r = ConvolutionBackwardFunction::apply(grad_out, x, sh, weight, edge_index, paths,
                                              coefficients, mask);
  return {mask[0] ? r[0] : at::Tensor(), mask[1] ? r[1] : at::Tensor(),
          mask[2] ? r[2] : at::Tensor()};
}

at::Tensor convolution_radial_autograd(const at::Tensor &x, const at::Tensor &sh,
                                       const at::Tensor &hidden, const at::Tensor &linear,
                                       const at::Tensor &edge_index, const at::Tensor &paths,
                                       const at::Tensor &coefficients, int64_t out_dim)
{
  check_constants(paths, coefficients);
  return ConvolutionRadialFunction::apply(x, sh, hidden, linear, edge_index, paths, coefficients,
                                          out_dim);
}

// Below autograd, on any device: the product, then the operator of that device.
at::Tensor convolution_radial_plain(const at::Tensor &x, const at::Tensor &sh,
                                    const at::Tensor &hidden, const at::Tensor &linear,
                                    const at::Tensor &edge_index, const at::Tensor &paths,
                                    const at::Tensor &coefficients, int64_t out_dim)
{
  return call_convolution(x, sh, at::mm(hidden, linear), edge_index, paths, coefficients, out_dim);
}

}    // namespace

TORCH_LIBRARY_IMPL(hienet, Autograd, m)
{
  m.impl("convolution", &convolution_autograd);
  m.impl("convolution_backward", &convolution_backward_autograd);
  m.impl("convolution_radial", &convolution_radial_autograd);
}

TORCH_LIBRARY_IMPL(hienet, CompositeExplicitAutograd, m)
{
  m.impl("convolution_radial", &convolution_radial_plain);
}

}    // namespace ops
}    // namespace hienet
