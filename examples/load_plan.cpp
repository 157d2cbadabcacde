// Load an edgevit TensorRT plan with TensorRT's C++ API and run one batch.
//
// NEVER LINKED OR RUN HERE: this project's CI has no TensorRT and no GPU (it was only syntax-checked with
// g++ -fsyntax-only against the headers of NVIDIA/TensorRT v10.3.0 and v11.0 and a stand-in for CUDA's
// cuda_runtime_api.h, by hand, when this file was last changed). Written against the
// TensorRT 10/11 C++ API (NvInferRuntime.h: IRuntime, ICudaEngine, IExecutionContext, enqueueV3;
// NvInferRuntimeBase.h: DataType) as of NVIDIA/TensorRT v10.3.0 and v11.0. The plan is the raw
// file `edgevit build` writes (no prepended bytes), so it loads as is.
//
// Build (Jetson / desktop with TensorRT installed):
//   g++ -std=c++17 load_plan.cpp -o load_plan -I/usr/include/aarch64-linux-gnu -I/usr/local/cuda/include
//       -L/usr/local/cuda/lib64 -lnvinfer -lcudart          (one line)
// Run:  ./load_plan out/model.plan 1                         (batch 1; inputs are zeros: feed preprocessed images)
//       ./load_plan out/model.plan 1 --version-compatible    (a plan built with edgevit build --version-compatible)

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

class Logger : public nvinfer1::ILogger {
    void log(Severity severity, char const* msg) noexcept override {
        if (severity <= Severity::kWARNING) std::cerr << msg << "\n";
    }
};

// Bits per element of a tensor type; 0 for a type this example does not handle.
static int bitsOf(nvinfer1::DataType t) {
    switch (t) {
        case nvinfer1::DataType::kFLOAT: return 32;
        case nvinfer1::DataType::kINT32: return 32;
        case nvinfer1::DataType::kINT64: return 64;
        case nvinfer1::DataType::kHALF: return 16;
        case nvinfer1::DataType::kBF16: return 16;
        case nvinfer1::DataType::kINT8: return 8;
        case nvinfer1::DataType::kUINT8: return 8;
        case nvinfer1::DataType::kBOOL: return 8;
        case nvinfer1::DataType::kFP8: return 8;
        case nvinfer1::DataType::kINT4: return 4;
        default: return 0;
    }
}

static bool cudaOk(cudaError_t err, char const* what) {
    if (err != cudaSuccess) std::cerr << what << " failed: " << cudaGetErrorString(err) << "\n";
    return err == cudaSuccess;
}

int main(int argc, char** argv) {
    if (argc < 2) { std::cerr << "usage: load_plan ENGINE.plan [BATCH] [--version-compatible]\n"; return 2; }
    int batch = argc > 2 ? std::stoi(argv[2]) : 1;
    bool versionCompatible = argc > 3 && std::strcmp(argv[3], "--version-compatible") == 0;
    std::ifstream file(argv[1], std::ios::binary);
    if (!file) { std::cerr << argv[1] << ": cannot open\n"; return 1; }
    std::vector<char> plan((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());

    Logger logger;
    std::unique_ptr<nvinfer1::IRuntime> runtime{nvinfer1::createInferRuntime(logger)};
    // A version-compatible plan carries its own lean runtime: TensorRT runs it only when allowed to.
    if (versionCompatible) runtime->setEngineHostCodeAllowed(true);
    std::unique_ptr<nvinfer1::ICudaEngine> engine{runtime->deserializeCudaEngine(plan.data(), plan.size())};
    if (!engine) { std::cerr << "deserializeCudaEngine failed: rebuild the plan on this device\n"; return 1; }
    std::unique_ptr<nvinfer1::IExecutionContext> context{engine->createExecutionContext()};
    if (!context) { std::cerr << "createExecutionContext failed\n"; return 1; }

    cudaStream_t stream;
    if (!cudaOk(cudaStreamCreate(&stream), "cudaStreamCreate")) return 1;
    std::vector<void*> buffers;
    bool ok = true;
    for (int i = 0; ok && i < engine->getNbIOTensors(); ++i) {
        char const* name = engine->getIOTensorName(i);
        bool input = engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
        if (input) {
            nvinfer1::Dims dims = engine->getTensorShape(name);
            dims.d[0] = batch;  // the batch dim is dynamic; it must lie in the build profile
            if (!context->setInputShape(name, dims)) {
                std::cerr << name << ": batch " << batch << " is outside the engine's profile\n";
                ok = false;
                break;
            }
        }
        int bits = bitsOf(engine->getTensorDataType(name));
        if (bits == 0) { std::cerr << name << ": tensor type not handled by this example\n"; ok = false; break; }
        nvinfer1::Dims shape = context->getTensorShape(name);
        size_t count = 1;
        for (int d = 0; d < shape.nbDims; ++d) count *= static_cast<size_t>(shape.d[d]);
        size_t bytes = (count * static_cast<size_t>(bits) + 7) / 8;
        void* ptr = nullptr;
        if (!cudaOk(cudaMalloc(&ptr, bytes), "cudaMalloc")) { ok = false; break; }
        buffers.push_back(ptr);
        ok = cudaOk(cudaMemsetAsync(ptr, 0, bytes, stream), "cudaMemsetAsync") && context->setTensorAddress(name, ptr);
        std::cout << name << (input ? " (input) " : " (output) ") << count << " values, " << bytes << " bytes\n";
    }
    if (ok) {
        ok = context->enqueueV3(stream);
        std::cout << (ok ? "enqueueV3 ok" : "enqueueV3 failed") << "\n";
        ok = cudaOk(cudaStreamSynchronize(stream), "cudaStreamSynchronize") && ok;
    }
    for (void* p : buffers) cudaFree(p);
    cudaStreamDestroy(stream);
    return ok ? 0 : 1;
}
