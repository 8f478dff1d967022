// Consumer of the installed tern::mpi: initializes MPI (one process, no mpiexec), sums one value
// across the processes and checks the world size.
#include <cstdio>

#include <tern/distributed/mpi.hpp>
#include <tern/tern.hpp>

int main(int argc, char** argv) {
    tern::distributed::mpi_context mpi(argc, argv);
    return tern::distributed::run_or_abort(mpi, [&] {
        float one = 1.0f;
        tern::distributed::allreduce_sum(&one, 1, mpi.comm());
        tern::detail::require(one == float(mpi.size()), "consumer_mpi: the allreduce gave ", one, " for ",
                              mpi.size(), " processes");
        std::printf("tern %s with MPI: rank %d of %d\n", TERN_VERSION_STRING, mpi.rank(), mpi.size());
        return 0;
    });
}
