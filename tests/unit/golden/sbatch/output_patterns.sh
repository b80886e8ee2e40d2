#!/bin/bash
#SBATCH -o "out dir/%J.%s.%t.%n.%u.%N.%x-%%.log"
#SBATCH -e 'literal\%j.err'
#SBATCH -D "work/../run dir"
pwd
