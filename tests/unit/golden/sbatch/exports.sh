#!/bin/bash
#SBATCH --export=FOO,"BAR=a,b c",HOSTILE
env
