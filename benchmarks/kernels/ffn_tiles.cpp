// Probe for benchmarks/fused_ffn.py: one MobileBERT FFN sub-block of a NoNorm + ReLU student,
//   z = NoNorm(x + relu(x W1^T + b1) W2^T + b2),  NoNorm(v) = v * g + be,
// forward and backward with every element-wise step written as a loop over a tile of `tile`
// tokens right after the matrix product that produced it (still in cache), no autograd tape.
// Not used by mbnas: it measures how much such fusion could give (README "Status and known gaps").
// x (N, D), w1 (F, D), b1 (F), w2 (D, F), b2 (D), g (D), be (D); float32, contiguous.
#include <torch/extension.h>
using torch::Tensor;
// x (N,D) w1 (F,D) b1 (F) w2 (D,F) b2 (D) g (D) be (D); returns z, and saves h (N,F), s=y+x (N,D)
std::vector<Tensor> fwd(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2, Tensor g, Tensor be, int64_t tile) {
  int64_t N = x.size(0), D = x.size(1), F = w1.size(0);
  auto h = torch::empty({N, F}, x.options());
  auto s = torch::empty({N, D}, x.options());
  auto z = torch::empty({N, D}, x.options());
  auto w1t = w1.t(), w2t = w2.t();
  const float* gp = g.data_ptr<float>(); const float* bp = be.data_ptr<float>();
  for (int64_t a = 0; a < N; a += tile) {
    int64_t r = std::min(tile, N - a);
    auto xt = x.narrow(0, a, r), ht = h.narrow(0, a, r), st = s.narrow(0, a, r), zt = z.narrow(0, a, r);
    at::addmm_out(ht, b1, xt, w1t);
    float* hp = ht.data_ptr<float>();
    for (int64_t i = 0; i < r * F; ++i) hp[i] = hp[i] > 0.f ? hp[i] : 0.f;
    at::addmm_out(st, xt, ht, w2t);   // s = x + h W2^T
    float* sp = st.data_ptr<float>(); float* zp = zt.data_ptr<float>();
    const float* b2p = b2.data_ptr<float>();
    for (int64_t i = 0; i < r; ++i) for (int64_t j = 0; j < D; ++j) {
      float v = sp[i * D + j] + b2p[j]; sp[i * D + j] = v; zp[i * D + j] = v * gp[j] + bp[j]; }
  }
  return {z, h, s};
}
// dz (N,D) -> dx, dw1, db1, dw2, db2, dg, dbe
std::vector<Tensor> bwd(Tensor dz, Tensor x, Tensor h, Tensor s, Tensor w1, Tensor w2, Tensor g, int64_t tile) {
  int64_t N = x.size(0), D = x.size(1), F = w1.size(0);
  auto dx = torch::empty({N, D}, x.options());
  auto dw1 = torch::zeros_like(w1), dw2 = torch::zeros_like(w2);
  auto db1 = torch::zeros({F}, x.options()), db2 = torch::zeros({D}, x.options());
  auto dg = torch::zeros({D}, x.options()), dbe = torch::zeros({D}, x.options());
  auto dy = torch::empty({tile, D}, x.options());
  auto dh = torch::empty({tile, F}, x.options());
  const float* gp = g.data_ptr<float>();
  float *db1p = db1.data_ptr<float>(), *db2p = db2.data_ptr<float>(), *dgp = dg.data_ptr<float>(), *dbep = dbe.data_ptr<float>();
  for (int64_t a = 0; a < N; a += tile) {
    int64_t r = std::min(tile, N - a);
    auto dzt = dz.narrow(0, a, r), xt = x.narrow(0, a, r), ht = h.narrow(0, a, r), st = s.narrow(0, a, r);
    auto dyt = dy.narrow(0, 0, r), dht = dh.narrow(0, 0, r), dxt = dx.narrow(0, a, r);
    const float* dzp = dzt.data_ptr<float>(); const float* sp = st.data_ptr<float>(); float* dyp = dyt.data_ptr<float>();
    for (int64_t i = 0; i < r; ++i) for (int64_t j = 0; j < D; ++j) {
      float d = dzp[i * D + j]; dgp[j] += d * sp[i * D + j]; dbep[j] += d; float v = d * gp[j]; dyp[i * D + j] = v; db2p[j] += v; }
    dw2.addmm_(dyt.t(), ht);            // (D,F) += dy^T h
    at::mm_out(dht, dyt, w2);           // dh = dy W2   (r,F)
    float* dhp = dht.data_ptr<float>(); const float* hp = ht.data_ptr<float>();
    for (int64_t i = 0; i < r; ++i) for (int64_t j = 0; j < F; ++j) {
      float v = hp[i * F + j] > 0.f ? dhp[i * F + j] : 0.f; dhp[i * F + j] = v; db1p[j] += v; }
    dw1.addmm_(dht.t(), xt);            // (F,D) += dh^T x
    at::addmm_out(dxt, dyt, dht, w1);   // dx = dy + dh W1
  }
  return {dx, dw1, db1, dw2, db2, dg, dbe};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("fwd", &fwd, "forward: (z, h, s)");
  m.def("bwd", &bwd, "backward: (dx, dw1, db1, dw2, db2, dg, dbe)");
}
