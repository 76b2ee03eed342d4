package android

object R {
    object string {
        const val cancel = 0x01040000
    }
}
