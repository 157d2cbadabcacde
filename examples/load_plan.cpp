// Load an edgevit TensorRT plan with TensorRT's C++ API and run one batch.
//
// UNTESTED HERE: this project's CI has no TensorRT and no GPU. Written against the TensorRT 10
// C++ API (NvInferRuntime.h: IRuntime, ICudaEngine, IExecutionContext, enqueueV3). The plan is
// the raw file `edgevit build` writes (no prepended bytes), so it loads as is.
//
// Build (Jetson / desktop with TensorRT installed):
//   g++ -std=c++17 load_plan.cpp -o load_plan -I/usr/include/aarch64-linux-gnu \
//       -lnvinfer -lcudart -L/usr/local/cuda/lib64 -I/usr/local/cuda/include
// Run:  ./load_plan out/model.plan 1   (batch 1; inputs are zeros here: feed preprocessed images)

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

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

int main(int argc, char** argv) {
    if (argc < 2) { std::cerr << "usage: load_plan ENGINE.plan [BATCH]\n"; return 2; }
    int batch = argc > 2 ? std::stoi(argv[2]) : 1;
    std::ifstream file(argv[1], std::ios::binary);
    std::vector<char> plan((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());

    Logger logger;
    std::unique_ptr<nvinfer1::IRuntime> runtime{nvinfer1::createInferRuntime(logger)};
    std::unique_ptr<nvinfer1::ICudaEngine> engine{runtime->deserializeCudaEngine(plan.data(), plan.size())};
    if (!engine) { std::cerr << "deserializeCudaEngine failed: rebuild the plan on this device\n"; return 1; }
    std::unique_ptr<nvinfer1::IExecutionContext> context{engine->createExecutionContext()};

    cudaStream_t stream;
    cudaStreamCreate(&stream);
    std::vector<void*> buffers;
    for (int i = 0; i < engine->getNbIOTensors(); ++i) {
        char const* name = engine->getIOTensorName(i);
        nvinfer1::Dims dims = engine->getTensorShape(name);
        if (engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT) {
            dims.d[0] = batch;  // the batch dim is dynamic; it must lie in the build profile
            context->setInputShape(name, dims);
        }
        nvinfer1::Dims shape = context->getTensorShape(name);
        size_t count = 1;
        for (int d = 0; d < shape.nbDims; ++d) count *= static_cast<size_t>(shape.d[d]);
        void* ptr = nullptr;
        cudaMalloc(&ptr, count * sizeof(float));  // edgevit graphs take and return float32
        cudaMemsetAsync(ptr, 0, count * sizeof(float), stream);
        context->setTensorAddress(name, ptr);
        buffers.push_back(ptr);
        std::cout << name << (engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? " (input) " : " (output) ")
                  << count << " values\n";
    }
    bool ok = context->enqueueV3(stream);
    cudaStreamSynchronize(stream);
    std::cout << (ok ? "enqueueV3 ok" : "enqueueV3 failed") << "\n";
    for (void* p : buffers) cudaFree(p);
    cudaStreamDestroy(stream);
    return ok ? 0 : 1;
}
