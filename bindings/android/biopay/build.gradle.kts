plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.biopay"
    compileSdk = 35
    defaultConfig {
        // StrongBox: 28 (androidx BiometricPrompt itself works from 23);
        // setUserAuthenticationParameters(0, AUTH_BIOMETRIC_STRONG): 30.
        minSdk = 28
        consumerProguardFiles("consumer-rules.pro")
    }
    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
    // jniLibs/<abi>/libbiopay_bindings.so come from build-aar.sh (cargo-ndk).
    sourceSets["main"].jniLibs.srcDirs("src/main/jniLibs")
}

dependencies {
    // uniffi's Kotlin bindings call the native library through JNA; the @aar
    // artifact carries JNA's own native libraries for every Android ABI. 5.17.0
    // or newer: older libjnidispatch.so crash on 16 KB-page devices.
    implementation("net.java.dev.jna:jna:5.17.0@aar")
    // The async API (suspend functions) runs on kotlinx.coroutines.
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.9.0")
    implementation("androidx.biometric:biometric:1.1.0")
    implementation("androidx.fragment:fragment-ktx:1.8.5")
}
