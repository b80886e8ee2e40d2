#!/bin/bash
#SBATCH --export=ALL,FOO=overridden
env
